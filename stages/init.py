"""init@<model>: the model everything starts from (built from scratch or loaded), saved to models/init-<model>/.

Tiny presets are built from a config with a byte-level BPE tokenizer trained on every task's chunks and the
instruction data, then (`copying`) taught to copy from their context (perpetual/copying.py); a pretrained
model (hub id, local folder, installed package; safetensors or GGUF) is loaded and saved as plain safetensors, so
that a colleague's `dvc pull` gets exactly the weights this run started from.
"""

import sys

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.config import InstructParams
from perpetual.copying import teach_copying
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json
from perpetual.models import describe, make_init
from perpetual.templates import ALPACA_TEMPLATE


def tokenizer_corpus(tasks: list[str], instruct: InstructParams) -> list[str]:
    texts = [ALPACA_TEMPLATE]
    for task in tasks:
        texts.extend(chunk["text"] for chunk in read_jsonl(paths.chunks(task)))
    for path in (instruct.alpaca, instruct.mcq):
        texts.extend(" ".join(str(value) for value in row.values()) for row in read_jsonl(path))
    return texts


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, model=True)

    spec = params.init.models[args.model]
    corpus = tokenizer_corpus(params.pipeline.tasks, params.instruct)
    model, tokenizer = make_init(spec, corpus, params.init.tokenizer, params.pipeline.seed, args.model)
    lessons = {}
    copying = params.init.copying_for(args.model)
    if copying is not None:
        lessons = teach_copying(model, copying, params.pipeline.seed, args.model)
    with atomic_path(paths.init_model(args.model)) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    info = {**describe(model, tokenizer), **lessons}
    write_json(paths.stage_metrics("init", args.model), info)
    print(f"init {args.model}: {info}", file=sys.stderr)


if __name__ == "__main__":
    main()
