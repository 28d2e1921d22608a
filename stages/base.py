"""base@<model>: the starting model, saved to models/base-<model>/.

Tiny presets are built from a config with a byte-level BPE tokenizer trained on every task's chunks and the
instruction data; a pretrained model (hub id or local folder) is loaded and saved as is, so that a colleague's
`dvc pull` gets exactly the weights this run started from.
"""

import sys
from pathlib import Path

from perpetual import paths
from perpetual.assembly import ALPACA_TEMPLATE
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json
from perpetual.models import describe, make_base

INSTRUCTION_DATA = [Path("data/instruct/alpaca.jsonl"), Path("data/instruct/mcq.jsonl")]


def tokenizer_corpus(tasks: list[str]) -> list[str]:
    texts = [ALPACA_TEMPLATE]
    for task in tasks:
        texts.extend(chunk["text"] for chunk in read_jsonl(paths.chunks(task)))
    for path in INSTRUCTION_DATA:
        if path.exists():
            texts.extend(" ".join(str(value) for value in row.values()) for row in read_jsonl(path))
    return texts


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, model=True)

    spec = params.base.models[args.model]
    model, tokenizer = make_base(spec, tokenizer_corpus(params.pipeline.tasks), params.base.tokenizer, params.pipeline.seed)
    with atomic_path(paths.base_model(args.model)) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    info = {**describe(model), "vocab_size": len(tokenizer)}
    write_json(paths.stage_metrics("base", args.model), info)
    print(f"base {args.model}: {info}", file=sys.stderr)


if __name__ == "__main__":
    main()
