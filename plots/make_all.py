"""Draws every figure whose results exist: runs `flexgen validate --json` on the H200 ablation
(results/validation/ablation-<tag>.json) when a flexgen binary is given, then each plotting script.
Usage: python3 plots/make_all.py [--flexgen build/release/engine/flexgen]
With FLEXGEN_RESULTS / FLEXGEN_FIGURES set, reads and writes there instead of results/ and plots/figures/."""
import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ablation  # noqa: E402
import common  # noqa: E402
import tradeoff  # noqa: E402
import validation  # noqa: E402
import whatif  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--flexgen", help="flexgen binary, to recompute the validation")
    args = parser.parse_args()
    for tag in validation.ENGINE_TAGS:
        results = common.RESULTS / f"ablation-{tag}.jsonl"
        if not (args.flexgen and results.exists()):
            continue
        out = validation.validation_path(tag)
        out.parent.mkdir(parents=True, exist_ok=True)
        v = subprocess.run([args.flexgen, "validate", "--json", str(results)], capture_output=True, text=True)
        if v.returncode != 0:
            print(v.stderr.strip(), file=sys.stderr)
            return 1
        out.write_text(v.stdout)
        print(out)
    for module in (ablation, tradeoff, whatif, validation):
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
