"""Tests of the installed lmc Python package (run by test_python.sh from
outside the checkout, so `import lmc` is the installed one). References:
HF tokenizers' ids (tests/golden/tokenizer), transformers'
apply_chat_template (tests/golden/templates), the stories260K reference
greedy ids, and the perplexity golden."""
import json
import os
import tempfile
import unittest
import urllib.request

import lmc

SRC = os.environ["LMC_SOURCE_DIR"]
STORIES = os.path.join(SRC, "models", "stories260K")
QWEN3_TOK = os.path.join(SRC, ".cache", "assets", "tokenizers", "qwen3")


def golden_greedy():
    with open(os.path.join(STORIES, "golden_greedy_from_bos.json")) as f:
        return json.load(f)["greedy_ids"]


class TestInstalled(unittest.TestCase):
    def test_installed_not_checkout(self):
        self.assertFalse(os.path.abspath(lmc.__file__).startswith(os.path.join(SRC, "python")))
        self.assertEqual(lmc.version(), lmc.__version__)


class TestTokenizer(unittest.TestCase):
    def test_ids_match_hf_tokenizers(self):
        tok = lmc.Tokenizer(QWEN3_TOK)
        with open(os.path.join(SRC, "tests", "golden", "tokenizer", "corpus.jsonl")) as f:
            corpus = [json.loads(x) for x in f]
        with open(os.path.join(SRC, "tests", "golden", "tokenizer", "qwen3.jsonl")) as f:
            head = json.loads(f.readline())
            golden = [json.loads(x) for x in f]
        self.assertEqual(head["pre"], [])
        for text, g in list(zip(corpus, golden))[:300]:
            self.assertEqual(tok.encode(text), g["i"], text)
            if "\x00" not in g["d"]:  # the C API returns decoded text NUL-terminated
                self.assertEqual(tok.decode(g["i"]), g["d"])
        self.assertGreater(tok.vocab_size, 150000)
        self.assertEqual(tok.id_to_token(tok.token_to_id("<|im_end|>")), "<|im_end|>")

    def test_chat_template_matches_transformers(self):
        tok = lmc.Tokenizer(QWEN3_TOK)
        with open(os.path.join(SRC, "tests", "golden", "templates", "qwen3.json")) as f:
            cases = [c for c in json.load(f)["cases"] if not c["error"]]
        self.assertGreater(len(cases), 10)
        for c in cases:
            out = tok.apply_chat_template(
                c["messages"], add_generation_prompt=c["add_generation_prompt"],
                continue_final_message=c["continue_final_message"], tools=c["tools"],
                **c["extra"])
            self.assertEqual(out, c["expected"], c["name"])

    def test_missing_tokenizer_raises(self):
        with self.assertRaises(lmc.LmcError) as cm:
            lmc.Tokenizer("/nonexistent/tokenizer-dir")
        self.assertEqual(cm.exception.status, "LMC_ERR_NOT_FOUND")
        self.assertIn("/nonexistent/tokenizer-dir", str(cm.exception))


class TestModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        stages = []
        cls.model = lmc.Model(STORIES, progress=lambda s, f: stages.append((s, f)))
        cls.stages = stages

    def test_load_progress(self):
        self.assertIn("weights", [s for s, _ in self.stages])
        self.assertEqual(self.stages[-1], ("model", 1.0))

    def test_stream_is_the_reference_greedy_run(self):
        chunks = []
        for c in self.model.stream([1], max_tokens=40):
            chunks.append(c)
        self.assertEqual([c.token for c in chunks], golden_greedy())
        self.assertEqual(chunks[-1].finish_reason, "length")
        self.assertTrue(all(c.finish_reason is None for c in chunks[:-1]))
        text = "".join(c.text for c in chunks)
        self.assertTrue(text.startswith("Once upon a time, there was a little girl named Lily."))
        self.assertEqual(self.model.generate([1], max_tokens=40), text)

    def test_stream_is_incremental_and_stoppable(self):
        it = self.model.stream("Once upon a time", max_tokens=200)
        first = [next(it) for _ in range(3)]
        it.close()  # stops the generation on its thread
        self.assertEqual(len(first), 3)
        # The model is free again, and a stop string ends the text before it.
        out = self.model.generate([1], max_tokens=40, stop=["Lily"])
        self.assertEqual(out, "Once upon a time, there was a little girl named ")

    def test_sampling_is_seeded(self):
        a = self.model.generate("Once", max_tokens=16, temperature=0.8, seed=7)
        b = self.model.generate("Once", max_tokens=16, temperature=0.8, seed=7)
        self.assertEqual(a, b)

    def test_perplexity_matches_golden(self):
        with open(os.path.join(SRC, "tests", "golden", "perplexity", "stories260K.json")) as f:
            g = json.load(f)
        with open(os.path.join(SRC, g["text"])) as f:
            text = f.read()
        for c in g["cases"]:
            r = self.model.perplexity(text, c["context"], c["stride"])
            self.assertLess(abs(r["perplexity"] - c["perplexity"]) / c["perplexity"], 1e-4)
            self.assertEqual(r["n_windows"], c["n_windows"])

    def test_errors_carry_lmc_message(self):
        with self.assertRaises(lmc.LmcError) as cm:
            self.model.perplexity("Once upon a time there was", 64, 65)
        self.assertEqual(cm.exception.status, "LMC_ERR_INVALID_ARG")
        self.assertIn("stride 65", cm.exception.message)
        with self.assertRaises(lmc.LmcError) as cm:
            lmc.Model("/nonexistent/model-dir")
        self.assertIn("/nonexistent/model-dir", str(cm.exception))
        with self.assertRaises(lmc.LmcError) as cm:
            list(self.model.stream([1, 100000], max_tokens=4))
        self.assertIn("100000", str(cm.exception))

    def test_callback_exception_propagates(self):
        def boom(stage, fraction):
            raise KeyError("from the callback")
        with self.assertRaises(KeyError):
            self.model.perplexity("Once upon a time there was a dog.", 8, 4, progress=boom)


class TestChatSession(unittest.TestCase):
    def test_turns_join_the_history(self):
        # stories260K's tokenizer with a chat template added.
        with tempfile.TemporaryDirectory() as d:
            for f in ("tokenizer.json", "tokenizer_config.json"):
                with open(os.path.join(STORIES, f)) as src, open(os.path.join(d, f), "w") as dst:
                    cfg = src.read()
                    if f == "tokenizer_config.json":
                        c = json.loads(cfg)
                        c["chat_template"] = (
                            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                            "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
                        cfg = json.dumps(c)
                    dst.write(cfg)
            m = lmc.Model(STORIES, tokenizer=d)
        s = m.chat(system="Be brief.", max_tokens=6)
        chunks = list(s.stream("Hi!"))
        self.assertGreater(len(chunks), 0)
        reply = s.send("And again?")
        self.assertIsInstance(reply, str)
        h = s.history
        self.assertEqual([x["role"] for x in h], ["user", "assistant", "user", "assistant"])
        self.assertEqual(h[0]["content"], "Hi!")
        self.assertEqual(h[3]["content"], reply)
        s.clear()
        self.assertEqual(s.history, [])

    def test_model_without_template_fails_clearly(self):
        m = lmc.Model(STORIES)
        s = m.chat(max_tokens=4)
        with self.assertRaises(lmc.LmcError) as cm:
            s.send("Hi")
        self.assertIn("template", str(cm.exception).lower())


class TestLora(unittest.TestCase):
    def test_train_progress_save_and_fuse(self):
        with tempfile.TemporaryDirectory() as d:
            data = os.path.join(d, "data")
            os.mkdir(data)
            with open(os.path.join(data, "train.jsonl"), "w") as f:
                for i in range(8):
                    f.write(json.dumps({"text": f"Once upon a time, a cat number {i} ran."}) + "\n")
            steps = []
            stats = lmc.train_lora(STORIES, data, os.path.join(d, "adapters"), iters=3,
                                   rank=4, batch_size=2, learning_rate=1e-3,
                                   progress=lambda p: steps.append((p.step, p.iters, p.loss)))
            self.assertEqual([s for s, _, _ in steps], [1, 2, 3])
            self.assertTrue(all(n == 3 and loss > 0 for _, n, loss in steps))
            self.assertEqual(stats["steps"], 3)
            self.assertAlmostEqual(stats["final_loss"], steps[-1][2], places=5)
            for f in ("adapter_model.safetensors", "adapter_config.json"):
                self.assertTrue(os.path.exists(os.path.join(d, "adapters", f)))
            with self.assertRaises(lmc.LmcError) as cm:
                lmc.train_lora(STORIES, data, os.path.join(d, "a2"), iters=5, batch_size=2,
                               progress=lambda p: p.step < 2)
            self.assertEqual(cm.exception.status, "LMC_ERR_CANCELLED")
            lmc.fuse_lora(STORIES, os.path.join(d, "adapters"), os.path.join(d, "fused"))
            fused = lmc.Model(os.path.join(d, "fused"))
            self.assertGreater(len(fused.generate([1], max_tokens=8)), 0)


class TestServer(unittest.TestCase):
    def test_completions(self):
        m = lmc.Model(STORIES)
        with lmc.Server(m, port=0, model_name="stories") as srv:
            self.assertGreater(srv.port, 0)
            req = urllib.request.Request(
                srv.url + "/v1/completions",
                data=json.dumps({"prompt": "Once upon a time", "max_tokens": 8,
                                 "temperature": 0}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                body = json.load(r)
        self.assertEqual(body["model"], "stories")
        self.assertEqual(body["choices"][0]["text"],
                         m.generate("Once upon a time", max_tokens=8))


if __name__ == "__main__":
    unittest.main(verbosity=2)
