"""Extra chat-format goldens from mistral_common (edge cases beyond the shared fixture's).

Writes tests/fixtures/chat/extra.json: for each case, OpenAI-style messages (images as data: URLs of the
shared fixture's PNGs) and the token ids mistral_common's MistralTokenizer.encode_chat_completion gives with the
tiny and the full Tekken vocabulary.

    pip install mistral_common==1.13.1 && python3 scripts/gen_chat_goldens.py
"""
import base64
import json
import pathlib
import tempfile

import mistral_common
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "tiny-pixtral"


def data_url(name):
    return "data:image/png;base64," + base64.b64encode((FIXTURES / "golden" / "images" / name).read_bytes()).decode()


A, B = data_url("chat_a_32x48.png"), data_url("chat_b_48x16.png")


def img(url):
    return {"type": "image_url", "image_url": {"url": url}}


def text(t):
    return {"type": "text", "text": t}


CASES = {
    "consecutive_user_messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "system_between_users": [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "S"},
        {"role": "user", "content": "b"},
    ],
    "two_system_messages": [
        {"role": "system", "content": "One."},
        {"role": "system", "content": "Two."},
        {"role": "user", "content": "Hi"},
    ],
    "assistant_first": [{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi"}],
    "system_only_then_user_chunks": [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": [text("  leading spaces"), img(A)]},
    ],
    "texts_then_image": [{"role": "user", "content": [text("one"), text("two"), img(A)]}],
    "image_image": [{"role": "user", "content": [img(A), img(B)]}],
    "text_image_text": [{"role": "user", "content": [text("before"), img(B), text("after")]}],
    "merged_users_with_images": [
        {"role": "user", "content": [img(A)]},
        {"role": "user", "content": [text("and"), img(B)]},
    ],
    "empty_text_chunk": [{"role": "user", "content": [text(""), img(A), text("x")]}],
    "assistant_trailing_spaces": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "answer   "},
        {"role": "user", "content": "more"},
    ],
    "prefix_assistant": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Sure", "prefix": True}],
    # The last of two assistant messages continued: they merge, and the answer continues both.
    "prefix_after_assistant": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": [text(""), text("b")], "prefix": True},
    ],
    "unicode_and_newlines": [{"role": "user", "content": "Héllo\n\n日本語 🙂\r\n\ttab"}],
    # A system message without parts is dropped; one whose only part is empty text still adds "\n\n".
    "empty_system_messages": [
        {"role": "system", "content": []},
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": []},
        {"role": "system", "content": ""},
        {"role": "user", "content": "Hi"},
    ],
    "system_part_with_empty_text": [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [text("")]},
        {"role": "user", "content": "Hi"},
    ],
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
# OpenAI's optional fields left out: mistral_common writes description "" and parameters {}.
BARE = {"type": "function", "function": {"name": "now"}}
# Key order as written (integer-like keys too, which JSON.parse would move first), 1.0 as written, non-ASCII kept.
ODD = {
    "type": "function",
    "function": {
        "parameters": {
            "type": "object",
            "properties": {"zeta": {"type": "number", "minimum": 1.0}, "2": {"default": 1e20}, "1": {}},
        },
        "description": "Søg «quotes\" and\nnewlines»",
        "name": "odd-name_2",
        "strict": True,
    },
}


def call(id_, name, arguments):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


# Cases with tools, encoded from OpenAI's request shape (ChatCompletionRequest.from_openai, as vLLM does).
TOOL_CASES = {
    "tools_single_turn": ([{"role": "user", "content": "Weather in Paris?"}], [WEATHER]),
    "tools_system_and_image": (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [text("What city is this?"), img(A)]}],
        [WEATHER, BARE],
    ),
    "tool_call_then_result": (
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call("abc123DEF", "get_weather", '{"city":"Paris"}')]},
            {"role": "tool", "tool_call_id": "abc123DEF", "content": '{"temp": 21.0, "sky": "clear"}'},
        ],
        [WEATHER],
    ),
    "parallel_calls_two_results": (
        [
            {"role": "user", "content": "Paris and Oslo?"},
            {
                "role": "assistant",
                "tool_calls": [
                    call("aaaaaaaa1", "get_weather", '{"city": "Paris", "unit": "c"}'),
                    call("aaaaaaaa2", "get_weather", '{"city": "Oslo"}'),
                ],
            },
            {"role": "tool", "tool_call_id": "aaaaaaaa1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "aaaaaaaa2", "content": [text("rain"), text("wind")]},
        ],
        [WEATHER],
    ),
    "tool_history_then_user": (
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "tool_calls": [call("Z9Z9Z9Z9Z", "now", "")]},
            {"role": "tool", "tool_call_id": "Z9Z9Z9Z9Z", "content": ""},
            {"role": "assistant", "content": "It is noon.  "},
            {"role": "user", "content": [img(B), text("and now?")]},
        ],
        [BARE, WEATHER],
    ),
    "json_numbers_and_text": (
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [call("n0n0n0n0n", "odd-name_2", '{"2": 1e20, "1": [1.0, -0.0, 1e-7, 0.0001, 123456789.125, 1e16, 12345678901234567890], "x": NaN}')],
            },
            {"role": "tool", "tool_call_id": "n0n0n0n0n", "content": 'not json: {"a": 1} \u00e9 "q"\n\t\u0001'},
        ],
        [ODD],
    ),
    "arguments_as_object": (
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call("obj000001", "odd-name_2", {"2": 2.0, "1": [1e-7], "é": "ü"})]},
            {"role": "tool", "tool_call_id": "obj000001", "content": "ok"},
        ],
        [ODD],
    ),
    # json.loads gives None for "null": the value null goes into the prompt, not the string "null".
    "null_arguments_and_results": (
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [call("nul000001", "now", "null"), call("nul000002", "now", " null\n")]},
            {"role": "tool", "tool_call_id": "nul000001", "content": "null"},
            {"role": "tool", "tool_call_id": "nul000002", "content": [text("null")]},
        ],
        [BARE],
    ),
    "two_tool_rounds": (
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [call("first0001", "now", "{}")]},
            {"role": "tool", "tool_call_id": "first0001", "content": "[1, 2]"},
            {"role": "assistant", "tool_calls": [call("second002", "now", "{ }")]},
            {"role": "tool", "tool_call_id": "second002", "content": '"s"'},
            {"role": "user", "content": "y"},
        ],
        [BARE],
    ),
}


# JSON texts as tool arguments and results bring them: what json.dumps(json.loads(text), ensure_ascii=False)
# writes, or null where json.loads refuses the text.
PYJSON = [
    "0", "-0", "1.0", "-0.0", "1e5", "1E+5", "1e-5", "0.0001", "0.00001", "123456789012345.5", "1234567890123456.0",
    "12345678901234567.0", "1e16", "1.5e300", "1e400", "-1e400", "5e-324", "0.1", "2.5e-7", "100", "-17",
    "123456789012345678901234567890", "NaN", "Infinity", "-Infinity", "true", "false", "null",
    '"plain"', '"é \\u00e9 \\n \\t \\u0001 \\u001f \\" \\\\ / \\/ \\ud83d\\ude00 \\u2028"',
    '{"b": 1, "a": [1, 2, {"c": null}], "b": 2}', '{"2": "x", "1": "y"}', " [ ] ", "{ }", '[1,2 , 3]',
    '{"a":{"b":{"c":[true,false,null,"s",1.25]}}}', "", "   ", "[1,]", "{'a': 1}", "01", "1.", ".5", "+1",
    "[1] x", "nan", "tru", '"\x01"', '"unterminated', "{\"a\" 1}", "-", "1e", '"\\x41"',
]


def tokenizer_with_images(path, tmp):
    data = json.loads(pathlib.Path(path).read_text())
    data.setdefault("multimodal", {"image_patch_size": 16, "max_image_size": 1024})
    out = pathlib.Path(tmp) / pathlib.Path(path).name
    out.write_text(json.dumps(data))
    return MistralTokenizer.from_file(str(out))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tokenizers = {
            "tiny": tokenizer_with_images(FIXTURES / "mistral" / "tekken.json", tmp),
            "full": tokenizer_with_images(FIXTURES / "tekken-full.json", tmp),
        }
        cases = []
        for name, messages in CASES.items():
            case = {"name": name, "messages": messages}
            for vocab, tok in tokenizers.items():
                request = ChatCompletionRequest(messages=messages)
                case[f"ids_{vocab}_vocab"] = tok.encode_chat_completion(request).tokens
            cases.append(case)
        for name, (messages, tools) in TOOL_CASES.items():
            # The body as a client sends it: the test reads it as the server does, from its text.
            case = {"name": name, "body": json.dumps({"messages": messages, "tools": tools}, ensure_ascii=False)}
            for vocab, tok in tokenizers.items():
                request = ChatCompletionRequest.from_openai(messages, tools)
                case[f"ids_{vocab}_vocab"] = tok.encode_chat_completion(request).tokens
            cases.append(case)
    pyjson = []
    for text in PYJSON:
        try:
            pyjson.append({"text": text, "dumps": json.dumps(json.loads(text), ensure_ascii=False)})
        except json.JSONDecodeError:
            pyjson.append({"text": text, "dumps": None})
    (ROOT / "tests" / "fixtures" / "chat" / "pyjson.json").write_text(json.dumps(pyjson, indent=1) + "\n")
    out = ROOT / "tests" / "fixtures" / "chat" / "extra.json"
    out.write_text(json.dumps({"mistral_common": mistral_common.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
