#!/usr/bin/env python3
"""Chat-template goldens: render real models' chat templates with
transformers' apply_chat_template(tokenize=False) over a set of
conversations, and write the cases + expected strings (or the error
transformers raised) to tests/golden/templates/<family>.json.

Run on the GPU machine (transformers 5.x):
    python3 tests/oracle/template_goldens.py [--out DIR]
With --dev (no transformers needed) a local jinja2 environment configured
like transformers renders instead; that is only for quick experiments and
never writes into tests/golden.
"""
import argparse
import copy
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TDIR = os.path.join(ROOT, "tests", "golden", "templates")

# Special tokens as the models' tokenizer_config.json define them.
FAMILIES = {
    "qwen3": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen2_5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3_2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<end_of_turn>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "deepseek_v3": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                    "pad_token": "<｜end▁of▁sentence｜>"},
    "phi3_5": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "mistral_nemo": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                "pad_token": "<|im_end|>"},
    # not a model: a template written to exercise Jinja features (see features.jinja)
    "features": {"bos_token": "<s>", "eos_token": "</s>"},
}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "number"}, "b": {"type": "number", "default": 1.5}}, "required": ["a"]}}},
]

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello, who are you?"}
A1 = {"role": "assistant", "content": "I am an assistant. How can I help?"}
U2 = {"role": "user", "content": "What is 2 + 2?"}
A2 = {"role": "assistant", "content": "2 + 2 = 4."}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call12345", "type": "function",
     "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
CALL_STR = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call12345", "type": "function",
     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
          "content": "{\"temperature\": 18, \"condition\": \"sunny\"}"}
UW = {"role": "user", "content": "What's the weather in Paris?"}
AW = {"role": "assistant", "content": "It is 18 °C and sunny in Paris."}


def cases_for(family):
    c = []

    def add(name, messages, tools=None, agp=False, cont=False, extra=None):
        c.append({"name": name, "messages": copy.deepcopy(messages), "tools": copy.deepcopy(tools),
                  "add_generation_prompt": agp, "continue_final_message": cont, "extra": extra or {}})

    add("single_user_gen", [U1], agp=True)
    add("single_user_nogen", [U1])
    add("system_user_gen", [SYS, U1], agp=True)
    add("multi_turn_gen", [U1, A1, U2], agp=True)
    add("multi_turn_ends_assistant", [U1, A1, U2, A2])
    add("system_multi_turn", [SYS, U1, A1, U2, A2])
    add("non_ascii", [{"role": "system", "content": "Réponds en français, s'il te plaît."},
                      {"role": "user", "content": "你好！Ça va? Ünïcödé ✓ 🚀 — «quotes» \"dq\" 'sq' \\ back"},
                      {"role": "assistant", "content": "Très bien, merci ! 😊"},
                      {"role": "user", "content": "日本語で答えて"}], agp=True)
    add("whitespace_content", [{"role": "user", "content": "  padded question \n\n"},
                               {"role": "assistant", "content": "\n answer with spaces  "},
                               {"role": "user", "content": "line1\nline2\n\tindented"}], agp=True)
    add("template_like_text", [{"role": "user", "content": "Explain {{ x }} and {% if %} and {# c #} in Jinja"}],
        agp=True)
    add("continue_final", [U1, {"role": "assistant", "content": "I am a language model, and"}], cont=True)
    add("continue_final_trailing_space", [SYS, U2, {"role": "assistant", "content": "The answer is "}], cont=True)
    add("tools_list_gen", [UW], tools=TOOLS, agp=True)
    add("tools_system_gen", [SYS, UW], tools=TOOLS, agp=True)
    add("tool_call_and_result", [UW, CALL, RESULT, AW], tools=TOOLS)
    add("tool_call_result_gen", [SYS, UW, CALL, RESULT], tools=TOOLS, agp=True)
    add("tool_call_string_args", [UW, CALL_STR, RESULT], tools=None, agp=True)
    add("roles_not_alternating", [U1, U2], agp=True)
    add("empty_content", [{"role": "user", "content": ""}], agp=True)
    add("content_blocks", [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image"},
                                                        {"type": "text", "text": " this picture."}]}], agp=True)
    add("continue_blocks", [U1, {"role": "assistant", "content": [{"type": "text", "text": "Partial answer"}]}],
        cont=True)
    add("continue_leading_space", [U1, {"role": "assistant", "content": "  leading and trailing  "}], cont=True)
    add("continue_user_message", [SYS, {"role": "user", "content": "Complete this sentence: the sky"}], cont=True)
    add("extra_variables", [SYS, U1, A1], extra={"custom_flag": True, "date_string": "01 Jan 2025",
                                                  "enable_thinking": False})
    if family == "qwen3":
        add("qwen3_no_thinking", [U1], agp=True, extra={"enable_thinking": False})
        add("qwen3_thinking_true", [SYS, U1], agp=True, extra={"enable_thinking": True})
        add("qwen3_reasoning_history",
            [U1, {"role": "assistant", "content": "<think>\nThe user greets me.\n</think>\n\nHi! I'm Qwen."},
             U2, {"role": "assistant", "content": "4", "reasoning_content": "Simple arithmetic."}, U1], agp=True)
        add("qwen3_tool_thinking",
            [UW, {"role": "assistant", "content": "<think>\nNeed weather.\n</think>\n\nLet me check.",
                  "tool_calls": CALL["tool_calls"]}, RESULT], tools=TOOLS, agp=True,
            extra={"enable_thinking": False})
    if family in ("llama3_2",):
        add("llama_date_pinned", [SYS, U1], agp=True, extra={"date_string": "05 Mar 2025"})
        add("llama_tools_in_system", [SYS, UW], tools=TOOLS, agp=True,
            extra={"tools_in_user_message": False, "date_string": "26 Jul 2024"})
        add("llama_tool_result_json",
            [UW, CALL, {"role": "tool", "content": {"temperature": 18, "ok": True, "list": [1, 2.5, None]}}],
            tools=TOOLS, agp=True, extra={"date_string": "26 Jul 2024"})
        add("llama_two_tool_calls", [UW, {"role": "assistant", "tool_calls": CALL["tool_calls"] * 2}], tools=TOOLS,
            extra={"date_string": "26 Jul 2024"})
        for case in c:  # strftime_now would make the output depend on today's date
            case["extra"].setdefault("date_string", "26 Jul 2024")
    return c


def dev_renderer(template, special):
    """Local stand-in configured like transformers (for experiments only)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.exceptions import TemplateError
    from datetime import datetime

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
    tpl = env.from_string(template)

    def render(messages, tools, agp, cont, extra):
        messages = copy.deepcopy(messages)
        if cont and agp:
            raise ValueError("continue_final_message and add_generation_prompt are not compatible")
        out = tpl.render(messages=messages, tools=tools, documents=None, add_generation_prompt=agp,
                         **{**special, **extra})
        if cont:
            tag = "CONTINUE_FINAL_MESSAGE_TAG "
            final = messages[-1]["content"]
            if isinstance(final, list):
                block = [b for b in final if "text" in b][-1]
                final = block["text"]
                block["text"] = final + tag
            else:
                messages[-1]["content"] = final + tag
            out = tpl.render(messages=messages, tools=tools, documents=None, add_generation_prompt=agp,
                             **{**special, **extra})
            if final.strip() not in out or tag.strip() not in out:
                raise ValueError("continue_final_message is set but the final message does not appear")
            loc = out.rindex(tag.strip())
            out = out[:loc] if out[loc: loc + len(tag)] == tag else out[:loc].rstrip()
        return out
    return render


def hf_renderer(template, special):
    from tokenizers import Tokenizer, models
    try:
        from transformers import PreTrainedTokenizerFast as Fast
    except ImportError:  # newer layouts
        from transformers import TokenizersBackend as Fast
    vocab = {"<unk_placeholder>": 0}
    for v in special.values():
        vocab.setdefault(v, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk_placeholder>"))
    tok = Fast(tokenizer_object=backend, **special)
    tok.chat_template = template

    def render(messages, tools, agp, cont, extra):
        return tok.apply_chat_template(messages, tools=tools, add_generation_prompt=agp,
                                       continue_final_message=cont, tokenize=False, **extra)
    return render


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=TDIR)
    ap.add_argument("--dev", action="store_true", help="render with local jinja2 (experiments only)")
    ap.add_argument("--source-dump", default=None, help="write transformers' rendering source here")
    args = ap.parse_args()
    if args.dev and os.path.abspath(args.out) == os.path.abspath(TDIR):
        sys.exit("--dev output must not go to tests/golden")
    version = "dev-jinja2"
    if not args.dev:
        import transformers
        version = transformers.__version__
        if args.source_dump:
            import inspect
            from transformers.utils import chat_template_utils as ctu
            with open(args.source_dump, "w") as f:
                f.write(inspect.getsource(ctu))
    os.makedirs(args.out, exist_ok=True)
    total = ok = 0
    for family, special in FAMILIES.items():
        with open(os.path.join(TDIR, family + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        render = (dev_renderer if args.dev else hf_renderer)(template, special)
        cases = cases_for(family)
        for case in cases:
            try:
                case["expected"] = render(case["messages"], case["tools"], case["add_generation_prompt"],
                                          case["continue_final_message"], case["extra"])
                case["error"] = None
                ok += 1
            except Exception as e:  # the template (or transformers) rejected the input
                case["expected"] = None
                case["error"] = f"{type(e).__name__}: {e}"
            total += 1
        doc = {"family": family, "template_file": family + ".jinja", "special_tokens": special,
               "generator": f"transformers {version} apply_chat_template(tokenize=False)", "cases": cases}
        with open(os.path.join(args.out, family + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(family, len(cases), "cases,", sum(1 for c in cases if c["error"] is None), "rendered")
    print(f"total {total} cases, {ok} rendered, {total - ok} errors")


if __name__ == "__main__":
    main()
