#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under tests/fuzz/corpus/<target>/.

Seeds are small valid inputs (and a few near-misses) built by hand here or copied from the
repository's fixtures; libFuzzer mutates them. Rerun after adding a target; the files are
committed. Usage: python3 scripts/make_fuzz_corpus.py
"""
import json
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
TINY = ROOT / "tests" / "fixtures" / "tiny-opt"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    (d / name).write_bytes(data)


def safetensors(tensors, metadata=None, pad_to=8):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % pad_to)
    return struct.pack("<Q", len(text)) + text + data


def make_safetensors():
    f32 = struct.pack("<4f", 1.0, -2.5, 0.0, 3.25)
    f16 = struct.pack("<4H", 0x3C00, 0xC100, 0x0000, 0x7C00)  # 1, -2.5, 0, inf
    bf16 = struct.pack("<2H", 0x3F80, 0xC020)                  # 1, -2.5
    write("safetensors", "f32_2x2", safetensors([("w", "F32", [2, 2], f32)]))
    write("safetensors", "f16_4", safetensors([("model.decoder.w", "F16", [4], f16)]))
    write("safetensors", "bf16_and_i64", safetensors([("a", "BF16", [1, 2], bf16),
                                                      ("b", "I64", [1], struct.pack("<q", -7))]))
    write("safetensors", "metadata", safetensors([("x", "F32", [1], struct.pack("<f", 0.5))],
                                                 metadata={"format": "pt"}))
    write("safetensors", "empty_header", safetensors([]))
    write("safetensors", "zero_dim", safetensors([("z", "F32", [0, 3], b""), ("s", "F32", [], struct.pack("<f", 9.0))]))
    write("safetensors", "gap_between", safetensors([("a", "F32", [1], struct.pack("<f", 1.0))]) + b"\0" * 4)
    # Near misses: a header length past the end, overlapping tensors, a short data section.
    write("safetensors", "bad_length", struct.pack("<Q", 1 << 40) + b"{}")
    overlap = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
    text = json.dumps(overlap).encode()
    write("safetensors", "overlap", struct.pack("<Q", len(text)) + text + b"\0" * 8)
    short = {"a": {"dtype": "F16", "shape": [8], "data_offsets": [0, 16]}}
    text = json.dumps(short).encode()
    write("safetensors", "short_data", struct.pack("<Q", len(text)) + text + b"\0" * 6)


def make_model_config():
    write("model_config", "tiny_opt.json", (TINY / "config.json").read_bytes())
    opt125 = {"architectures": ["OPTForCausalLM"], "model_type": "opt", "hidden_size": 768,
              "num_attention_heads": 12, "num_hidden_layers": 12, "ffn_dim": 3072, "vocab_size": 50272,
              "max_position_embeddings": 2048, "do_layer_norm_before": True, "word_embed_proj_dim": 768,
              "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2, "torch_dtype": "float16",
              "activation_function": "relu", "enable_bias": True}
    write("model_config", "opt_125m.json", json.dumps(opt125, indent=2))
    minimal = {"model_type": "opt", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
               "ffn_dim": 16, "vocab_size": 10, "max_position_embeddings": 4}
    write("model_config", "minimal.json", json.dumps(minimal))
    write("model_config", "opt_350m.json", json.dumps(dict(opt125, word_embed_proj_dim=512, hidden_size=1024,
                                                           num_attention_heads=16, ffn_dim=4096,
                                                           do_layer_norm_before=False)))
    write("model_config", "not_object.json", "[1, 2, 3]")


def make_hardware_spec():
    for path in sorted((ROOT / "experiments" / "hardware").glob("*.json")):
        if path.name in ("t4-paper.json", "h100-sxm.json", "l4.json"):
            write("hardware_spec", path.name, path.read_bytes())
    spec = json.loads((ROOT / "experiments" / "hardware" / "h100-sxm.json").read_text())
    spec.pop("description", None)
    write("hardware_spec", "no_description.json", json.dumps(spec))
    spec["gpu_memory_bytes"] = "80GiB"
    write("hardware_spec", "string_bytes.json", json.dumps(spec))


def byte_symbols():
    """GPT-2's byte -> unicode symbol table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def make_tokenizer():
    write("vocab_json", "tiny_opt.json", (TINY / "vocab.json").read_bytes())
    symbols = ["<s>", "<pad>", "</s>", "<unk>"] + byte_symbols() + ["he", "Ġt", "Ġthe"]
    write("vocab_json", "bytes_and_three_merges.json", json.dumps({s: i for i, s in enumerate(symbols)}, ensure_ascii=False))
    write("vocab_json", "no_bytes.json", json.dumps({"<s>": 0, "a": 1, "b": 2}))
    write("vocab_json", "gap.json", json.dumps({"a": 0, "b": 2}))
    write("merges_txt", "tiny_opt.txt", (TINY / "merges.txt").read_bytes())
    write("merges_txt", "short.txt", "#version: 0.2\nh e\nĠ t\nĠt he\n")
    write("merges_txt", "crlf_blank.txt", "#version: 0.2\r\nh e\r\n\r\nl l\r\nhe ll\r\n")
    write("merges_txt", "unknown_symbols.txt", "x y\nxy z\nÃ ©\n")
    write("merges_txt", "bad_line.txt", "h  e\n")
    for i, text in enumerate(["Hello world", "The quick brown fox's 12345 jumps!", "  two  spaces\n\ttab\r\n",
                              "héllo wörld — ünïcödé 😀", "</s>I'm sure it's 3.14, isn't it?", "日本語のテキスト"]):
        write("bpe_encode", f"text{i}", text)
    write("bpe_encode", "invalid_utf8", b"ab\xff\xfecd")


def jsonl(*objects):
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)


def make_prompt_file():
    """Prompt files of `flexgen batch` (docs/batch.md): the fuzz target reads them with the tiny
    fixture (vocabulary 767, 128 positions, a tokenizer) and as opt-125m without a tokenizer."""
    write("prompt_file", "text_prompts.jsonl", jsonl(
        {"id": "q1", "prompt": "The capital of France is", "max_new_tokens": 16, "stop": ["\n", "."]},
        {"id": "q2", "prompt": "Hello world", "stop": "!"},
        {"id": "q3", "prompt": "héllo wörld — 😀 \"quoted\"\n\ttab", "max_new_tokens": 1}))
    write("prompt_file", "token_prompts.jsonl", jsonl(
        {"id": 2, "prompt": [2, 133, 612, 9, 470, 16]},
        {"id": 0, "prompt": [0]},
        {"id": -5, "prompt": [2, 766], "max_new_tokens": 126},
        {"id": "last", "prompt": [766, 765, 4]}))
    write("prompt_file", "sampled.jsonl", jsonl(
        {"id": "s1", "prompt": [2, 31], "do_sample": True, "temperature": 0.7, "seed": 5},
        {"id": "s2", "prompt": [2, 31], "do_sample": True, "top_k": 20, "top_p": 0.9, "seed": 0},
        {"id": "g1", "prompt": [2, 31], "do_sample": False, "temperature": 2, "top_k": 3},
        {"id": "s3", "prompt": [2], "temperature": 1.5, "top_p": 1}))
    write("prompt_file", "bad_lines.jsonl", "\n".join([
        '{"id": "ok", "prompt": [2]}',
        '{"id": "b", "prompt": "Hello"',
        '[1, 2]',
        '{"prompt": [2]}',
        '{"id": 1.5, "prompt": [2]}',
        '{"id": null, "prompt": [2]}',
        '{"id": 1, "id": 2, "prompt": [3]}',
        '{"id": 3}',
        '{"id": 4, "prompt": 5}',
        '{"id": 5, "prompt": []}',
        '{"id": 6, "prompt": [2, 767]}',
        '{"id": 7, "prompt": [-1, 2.5]}',
        '{"id": 8, "prompt": [2], "max_new_tokens": 0}',
        '{"id": 9, "prompt": [2], "max_new_tokens": "4"}',
        '{"id": 10, "prompt": [2], "stop": [""]}',
        '{"id": 11, "prompt": [2], "stop": 3}',
        '{"id": 12, "prompt": [2], "temperature": 0, "do_sample": true}',
        '{"id": 13, "prompt": [2], "top_p": 1.5}',
        '{"id": 14, "prompt": [2], "top_k": -1}',
        '{"id": 15, "prompt": [2], "seed": -3}',
        '{"id": 16, "prompt": [2], "do_sample": 1}',
        '{"id": 17, "prompt": [2], "max_new_token": 4}',
        '{"id": 18, "prompt": [2], "meta": {}}',
        'not json at all',
        '"just a string"',
    ]) + "\n")
    write("prompt_file", "duplicate_ids.jsonl", jsonl(
        {"id": 7, "prompt": [2]},
        {"id": "7", "prompt": [2]},
        {"id": "x", "prompt": []},
        {"id": "x", "prompt": [2]},
        {"id": 7, "prompt": "again"}))
    big = 9223372036854775807
    write("prompt_file", "huge_numbers.jsonl", "\n".join([
        '{"id": 9223372036854775807, "prompt": [2]}',
        '{"id": -9223372036854775808, "prompt": [2]}',
        '{"id": 18446744073709551615, "prompt": [2]}',
        '{"id": "m1", "prompt": [2], "max_new_tokens": %d}' % big,
        '{"id": "m2", "prompt": [2], "max_new_tokens": 1e400}',
        '{"id": "m3", "prompt": [4294967298]}',
        '{"id": "m4", "prompt": [2], "seed": 18446744073709551615, "do_sample": true}',
        '{"id": "m5", "prompt": [2], "top_k": 2147483648, "do_sample": true}',
        '{"id": "m6", "prompt": [2], "temperature": 1e-50, "do_sample": true}',
        '{"id": "m7", "prompt": [2], "temperature": 1e300, "top_p": 1e-300, "do_sample": true}',
        '{"id": -0, "prompt": [-0]}',
    ]) + "\n")
    # Prompts at the context of the tiny model: 128 positions with the default 32 new tokens.
    write("prompt_file", "context_limit.jsonl", jsonl(
        {"id": "fits", "prompt": [2] + [5] * 95},
        {"id": "over", "prompt": [2] + [5] * 96},
        {"id": "all", "prompt": [2] + [5] * 126, "max_new_tokens": 1},
        {"id": "none_left", "prompt": [2] + [5] * 127, "max_new_tokens": 1}))
    write("prompt_file", "crlf_blank.jsonl",
          '\r\n{"id": "a", "prompt": "Hi"}\r\n  \t \r\n\r\n{"id": "b", "prompt": [2, 9]}\r\n{"id": "c", "prompt": [2]}')
    write("prompt_file", "bom.jsonl", b"\xef\xbb\xbf" + jsonl({"id": "a", "prompt": [2, 5]}).encode() +
          b"\xef\xbb\xbf" + jsonl({"id": "b", "prompt": "x"}).encode())
    write("prompt_file", "invalid_utf8.jsonl",
          b'{"id": "a\xff", "prompt": [2]}\n{"id": "b", "prompt": "caf\xc3"}\n{"id": "c", "prompt": [2]}\n\xfe\xff\n')
    write("prompt_file", "escapes.jsonl", jsonl(
        {"id": "new\nline", "prompt": "\u0000 nul"},
        {"id": "\u0000", "prompt": "😀 outside the BMP"},
        {"id": "tab\t", "prompt": [2], "stop": ["\r\n", "\u00e9"]}) +
          '{"id": "pair", "prompt": "\\ud83d\\ude00"}\n{"id": "lone", "prompt": "\\ud800"}\n'
          '{"id": "esc", "prompt": "\\u00e9\\n"}\n')
    write("prompt_file", "nested.jsonl", '{"id": [[[[[]]]]], "prompt": [[2]]}\n' + "[" * 200 + "]" * 200 + "\n")
    write("prompt_file", "blank_only.jsonl", "\n \n\t\n\r\n")
def make_sweep_file():
    write("sweep_file", "grid.json", json.dumps({
        "name": "grid", "target": "simulator", "hardware": "t4-paper",
        "base": {"model": "opt-30b", "prompt_len": 512, "gen_len": 32},
        "grid": [{"gpu_batch_size": [8, 16], "num_gpu_batches": [1, 4], "schedule": ["zig-zag", "row-by-row"],
                  "percent": [[0, 100, 100, 0, 100, 0], [20, 80, 0, 100, 0, 100]]}]}, indent=1))
    write("sweep_file", "variants.json", json.dumps({
        "name": "ablation", "target": "simulator", "hardware": "t4-paper", "output": "results/x.jsonl",
        "base": {"model": "opt-175b", "gen_len": 32},
        "grid": [{"v": [{"label": "all", "policy": "search"},
                        {"label": "fixed", "gpu_batch_size": 32, "num_gpu_batches": 8,
                         "percent": [0, 50, 0, 0, 0, 100], "cpu_cache_compute": True, "pin_weight": False}],
                  "overlap": [True, False]},
                 {"label": ["no-disk"], "policy": ["search"], "allow_disk": [False]}]}))
    write("sweep_file", "whatif.json", json.dumps({
        "name": "whatif-pcie", "target": "simulator", "hardware": "t4-paper",
        "base": {"model": "opt-30b", "policy": "search", "compress_weight": True},
        "grid": [{"hw.h2d_bytes_per_s": [12e9, 25e9, 50e9], "hw.gpu_memory_bytes": ["16GiB", 80e9],
                  "gpu_mem": ["12GiB"]}]}))
    write("sweep_file", "engine.json", json.dumps({
        "name": "engine", "target": "engine", "timeout_s": 600,
        "base": {"model": "opt-125m", "backend": "host", "seed": 1},
        "grid": [{"gpu_batch_size": [1, 2], "attn_sparsity": [1, 0.5], "compress_cache": [False, True],
                  "cpu_mem": ["1GiB"]}]}))
    write("sweep_file", "bad_axis.json", '{"name": "b", "target": "simulator", "hardware": "h", '
                                         '"grid": [{"v": [{"modle": "x"}], "gen_len": 4}]}')


def main():
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    make_safetensors()
    make_model_config()
    make_hardware_spec()
    make_tokenizer()
    make_prompt_file()
    make_sweep_file()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} files")


if __name__ == "__main__":
    main()
