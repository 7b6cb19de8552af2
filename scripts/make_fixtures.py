#!/usr/bin/env python3
"""Makes the tiny-OPT reference fixture with an independent implementation (HF transformers).

Run on the GPU machine (PyTorch, transformers and tokenizers are installed there):
    python3 scripts/make_fixtures.py --out DIR

It writes:
    DIR/tiny-opt/config.json, generation_config.json, model.safetensors   (a random OPTForCausalLM)
    DIR/tiny-opt/vocab.json, merges.txt                                   (its own byte-level BPE)
    DIR/reference.json              prompts, token ids, padding, greedy continuations, tokenizer cases
    DIR/reference_logits.safetensors  transformers' float32 logits for the padded prompt batch

Everything is computed on the CPU in float32 (no TF32), with fixed seeds. The C++ test suite
(tests/engine/model/fixture_test.cc and friends) checks the engine against these files.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer

# Training text for the tokenizer: written for this fixture; mixes English prose, code, numbers,
# punctuation, whitespace runs and some non-ASCII text so the merges cover those paths.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.",
    "A large language model generates text one token at a time, and each token needs every layer.",
    "When the weights do not fit in GPU memory, they live in host memory or on disk and stream in.",
    "Throughput is the number of generated tokens per second; latency is the time for one batch.",
    "The zig-zag schedule loads the weights of a layer once and reuses them for a block of batches.",
    "Hello, world! Hello again, world. Hello there; hello here: hello everywhere.",
    "It's a small model, isn't it? We'll see. They've said you'd like it, I'm sure they're right.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2048 65536 3.14159 2.71828 1e-5 2023-03-13.",
    "def forward(self, x):\n    return self.fc2(relu(self.fc1(x))) + x\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "Tabs\tand  double  spaces   and\nnew lines\n\nand blank lines.",
    "Caf\u00e9, na\u00efve, r\u00e9sum\u00e9, sch\u00f6n, stra\u00dfe, \u00e5ngstr\u00f6m, fa\u00e7ade.",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3082\u5c11\u3057\u3002\u4e2d\u6587\u4e5f\u6709\u4e00\u70b9\u3002",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5.",
    "Emoji too: \U0001F600 \U0001F680 \u2764\ufe0f and symbols like \u00a9 \u2122 \u2192 \u221e.",
    "Offloading moves tensors between three tiers: the GPU, the CPU, and the disk.",
    "Compression to four bits with groups of sixty-four keeps the error small.",
]

# Strings whose ids the C++ tokenizer must reproduce exactly.
TOKENIZER_CASES = [
    "Hello",
    "Hello, world!",
    "hello world",
    " leading space",
    "trailing space ",
    "two  spaces   three",
    "tab\there",
    "line\nbreak\n\nblank",
    "windows\r\nline",
    "It's isn't we'll they've I'm you'd they're",
    "DON'T SHOUT",
    "3.14159 and 2048 and 1e-5",
    "Caf\u00e9 na\u00efve sch\u00f6n",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "emoji \U0001F600\U0001F680 done",
    "combining e\u0301 and \u00e9",
    "words the model never saw: xylophone quagmire",
    "   ",
    "",
    "def f(x):\n    return x  # comment\n",
]

# Prompts of different lengths for the padded batch.
PROMPTS = [
    "Hello",
    "The quick brown fox jumps over",
    "When the weights do not fit in GPU memory, they",
    "Tabs\tand spaces",
]

GREEDY_TOKENS = 20
HELLO_NEW_TOKENS = 16


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    import transformers
    from transformers import OPTConfig, OPTForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True)

    model_dir = os.path.join(args.out, "tiny-opt")
    os.makedirs(model_dir, exist_ok=True)

    # --- tokenizer -------------------------------------------------------------------------
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(CORPUS * 4, vocab_size=1000, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    tok.save_model(model_dir)
    vocab_size = tok.get_vocab_size()
    assert tok.token_to_id("<s>") == 0 and tok.token_to_id("<pad>") == 1
    assert tok.token_to_id("</s>") == 2 and tok.token_to_id("<unk>") == 3
    bos = 2  # OPT's tokenizer prepends </s> (id 2) to every prompt

    def encode(text):
        return tok.encode(text, add_special_tokens=False).ids

    tokenizer_cases = []
    for text in TOKENIZER_CASES:
        ids = encode(text)
        assert tok.decode(ids, skip_special_tokens=False) == text, text
        tokenizer_cases.append({"text": text, "ids": ids})

    # --- model -----------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    config = OPTConfig(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=3, ffn_dim=256,
        num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=64,
        do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        layerdrop=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2, enable_bias=True,
        layer_norm_elementwise_affine=True, tie_word_embeddings=True, torch_dtype="float32")
    model = OPTForCausalLM(config).eval()
    # Re-draw every parameter so the logits are far from flat and greedy choices are decisive.
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.12 * torch.randn(p.shape, generator=gen))
    model.config.use_cache = True
    model.save_pretrained(model_dir, safe_serialization=True)

    # --- padded batch, logits --------------------------------------------------------------
    prompt_ids = [[bos] + encode(p) for p in PROMPTS]
    max_len = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), max_len), config.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), max_len), dtype=torch.long)
    for b, ids in enumerate(prompt_ids):
        input_ids[b, max_len - len(ids):] = torch.tensor(ids)
        mask[b, max_len - len(ids):] = 1
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, use_cache=True)
        logits = out.logits.float().contiguous()
        # float64 copy of the same model: how far float32 itself is from exact.
        model64 = OPTForCausalLM(config).eval().double()
        model64.load_state_dict(model.state_dict())
        logits64 = model64(input_ids=input_ids, attention_mask=mask).logits
    valid = mask.bool()
    rel64 = ((logits.double() - logits64)[valid].norm() / logits64[valid].norm()).item()
    save_file({"logits": logits, "attention_mask": mask.to(torch.int64).contiguous(),
               "input_ids": input_ids.contiguous()},
              os.path.join(args.out, "reference_logits.safetensors"))

    # --- greedy continuation of the padded batch, step by step with the KV cache ------------
    with torch.no_grad():
        past = out.past_key_values
        step_logits = logits[:, -1, :]
        cur_mask = mask.clone()
        greedy = [[] for _ in prompt_ids]
        min_margin = float("inf")
        for _ in range(GREEDY_TOKENS):
            top2 = torch.topk(step_logits, 2, dim=-1).values
            min_margin = min(min_margin, (top2[:, 0] - top2[:, 1]).min().item())
            nxt = step_logits.argmax(dim=-1)
            for b in range(len(prompt_ids)):
                greedy[b].append(int(nxt[b]))
            cur_mask = torch.cat([cur_mask, torch.ones((len(prompt_ids), 1), dtype=torch.long)], 1)
            o = model(input_ids=nxt[:, None], attention_mask=cur_mask, past_key_values=past,
                      use_cache=True)
            past = o.past_key_values
            step_logits = o.logits[:, -1, :].float()

        # The CLI check: transformers' own generate() for one prompt, stopping at </s>.
        hello_ids = [bos] + encode("Hello")
        gen_out = model.generate(torch.tensor([hello_ids]), max_new_tokens=HELLO_NEW_TOKENS,
                                 do_sample=False, eos_token_id=2, pad_token_id=1)
        hello_new = gen_out[0, len(hello_ids):].tolist()
    if min_margin < 1e-3:
        sys.exit(f"greedy margin {min_margin} too small: pick another --seed")

    reference = {
        "generator": "scripts/make_fixtures.py",
        "seed": args.seed,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "float32_vs_float64_relative_error": rel64,
        "min_greedy_top2_margin": min_margin,
        "bos_token_id": bos,
        "pad_token_id": config.pad_token_id,
        "prompts": PROMPTS,
        "prompt_ids": prompt_ids,
        "padded_input_ids": input_ids.tolist(),
        "attention_mask": mask.tolist(),
        "greedy_new_tokens": greedy,
        "greedy_new_text": [tok.decode(g, skip_special_tokens=True) for g in greedy],
        "hello_prompt": "Hello",
        "hello_new_tokens": hello_new,
        "hello_new_text": tok.decode(hello_new, skip_special_tokens=True),
        "tokenizer_cases": tokenizer_cases,
    }
    with open(os.path.join(args.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(json.dumps({k: reference[k] for k in ("transformers_version", "torch_version",
                                                "float32_vs_float64_relative_error",
                                                "min_greedy_top2_margin", "hello_new_text")},
                     ensure_ascii=False))
    print("files:", sorted(os.listdir(model_dir)))


if __name__ == "__main__":
    main()
