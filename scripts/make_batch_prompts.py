#!/usr/bin/env python3
"""Writes a prompt file for `flexgen batch` (docs/batch.md): N prompts of token ids.

    scripts/make_batch_prompts.py N MIN MAX [--vocab V] [--seed S] [--gen-len G] [--start-token T] > prompts.jsonl

Each line is {"id": "p<i>", "prompt": [T, ids...]} with a length (the start token included)
uniform in [MIN, MAX] and the other ids uniform in [4, V) (0-3 are OPT's special tokens); with
--gen-len, also "max_new_tokens": G. The same arguments always give the same file (Python's
random.Random(S), whose integer draws are stable across versions for a given seed).
"""
import argparse
import json
import random
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="number of prompts")
    parser.add_argument("min_len", type=int, help="shortest prompt, in tokens")
    parser.add_argument("max_len", type=int, help="longest prompt, in tokens")
    parser.add_argument("--vocab", type=int, default=50272, help="vocabulary size (default: OPT's 50272)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-len", type=int, default=None, help="max_new_tokens of every prompt (default: none)")
    parser.add_argument("--start-token", type=int, default=2, help="first token of every prompt (OPT's </s>: 2)")
    args = parser.parse_args()
    if args.n < 0:
        parser.error("N must not be negative")
    if not 1 <= args.min_len <= args.max_len:
        parser.error("need 1 <= MIN <= MAX")
    if args.vocab <= 4:
        parser.error("--vocab must be more than 4")
    if args.gen_len is not None and args.gen_len < 1:
        parser.error("--gen-len must be at least 1")
    rng = random.Random(args.seed)
    out = sys.stdout
    for i in range(args.n):
        length = rng.randint(args.min_len, args.max_len)
        ids = [args.start_token] + [rng.randrange(4, args.vocab) for _ in range(length - 1)]
        line = {"id": f"p{i}", "prompt": ids}
        if args.gen_len is not None:
            line["max_new_tokens"] = args.gen_len
        out.write(json.dumps(line, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
