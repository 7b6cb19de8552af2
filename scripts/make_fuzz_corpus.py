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
    make_sweep_file()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} files")


if __name__ == "__main__":
    main()
