"""params.yaml's `init` section: the models, one spec per model (`kind`: tiny-mamba2, tiny-gemma/tiny-llama or
pretrained), the tokenizer of the tiny ones and their copy lessons. Part of the params schema (perpetual/config.py);
no field has a default but those whose absence means none (a pretrained model's `name_or_path` or `package`,
`gguf_file`, `revision`; a field of a model's own copy lessons, which is then init.copying's)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from perpetual.strict import Strict

COPYING = (
    "copy lessons before anything else (`init.copying`): `true` takes `init.copying` as it is, `false` none, and a mapping "
    "replaces the `init.copying` fields it names"
)


class TinyMamba2(Strict):
    """A Mamba2 (a state-space model, like the paper's Mamba) built from these sizes and randomly initialised from
    `pipeline.seed`, with the tokenizer of `init.tokenizer`."""

    kind: Literal["tiny-mamba2"] = Field(description="a tiny Mamba2 built from scratch")
    hidden_size: int = Field(description="the model's width")
    num_hidden_layers: int = Field(description="Mamba2 blocks")
    head_dim: int = Field(description="the width of a head; `hidden_size` × `expand` must be a multiple of it (the heads: their quotient)")
    state_size: int = Field(description="the size of the SSM state")
    expand: int = Field(description="the inner width, as a multiple of `hidden_size`")
    n_groups: int = Field(description="groups of heads that share the B and C projections")
    chunk_size: int = Field(description="the chunk of the scan, in tokens (128: 1.7x faster than 64 on CPU for the default's lengths)")
    copying: bool | CopyingOverrides = Field(description=COPYING)


class TinyGemma(Strict):
    """A transformer built from these sizes and randomly initialised from `pipeline.seed`, with the tokenizer of
    `init.tokenizer`."""

    kind: Literal["tiny-gemma", "tiny-llama"] = Field(description="`tiny-gemma` (Gemma's architecture) or `tiny-llama` (Llama's)")
    hidden_size: int = Field(description="the model's width")
    num_hidden_layers: int = Field(description="transformer blocks")
    num_attention_heads: int = Field(description="query heads")
    num_key_value_heads: int = Field(description="key and value heads (fewer than the query heads: grouped-query attention)")
    head_dim: int = Field(description="the width of a head")
    intermediate_size: int = Field(description="the width of the MLP")
    max_position_embeddings: int = Field(description="the longest sequence, in tokens")
    copying: bool | CopyingOverrides = Field(description=COPYING)


class PretrainedModel(Strict):
    """Any Hugging Face causal LM, loaded as it is: a hub id or a local folder (`name_or_path`), or an installed Python
    package that ships one (`package`); exactly one of the two ([models.md](models.md#pretrained-models))."""

    kind: Literal["pretrained"] = Field(description="any Hugging Face causal LM")
    name_or_path: str | None = Field(None, description="a hub id or a local folder", examples=["state-spaces/mamba-2.8b-hf"])
    package: str | None = Field(
        None, description="an installed Python package that ships the model, found through the package, never a path of one machine"
    )
    gguf_file: str | None = Field(
        None,
        description="a GGUF checkpoint in that folder or hub repository (what Ollama, LM Studio and the hub offer), dequantised and "
        "saved by `init@<model>` as a plain safetensors model",
    )
    revision: str | None = Field(None, description="the hub revision; left out, the default branch")
    trust_remote_code: bool = Field(description="let transformers run code from the model's repository")

    @model_validator(mode="after")
    def exactly_one_location(self) -> PretrainedModel:
        if (self.name_or_path is None) == (self.package is None):
            raise ValueError("set exactly one of `name_or_path` (a hub id or folder) or `package` (an installed package)")
        return self


ModelSpec = Annotated[TinyMamba2 | TinyGemma | PretrainedModel, Field(discriminator="kind")]


class TokenizerParams(Strict):
    vocab_size: int = Field(ge=300, description="the vocabulary's size")
    min_frequency: int = Field(ge=1, description="the minimum pair frequency for a BPE merge")


class CopyingParams(Strict):
    """Random tokens, then spans copied from them, with the loss on the copies: how induction heads form, which let a
    model use a context. No text of any corpus is seen ([models.md](models.md#copy-lessons), `perpetual/copying.py`)."""

    steps: int = Field(ge=0, description="optimizer steps")
    context_length: int = Field(ge=4, description="random tokens before the spans: from 2 × `span_length` up to this, varied per batch")
    spans: int = Field(ge=1, description="spans copied per row")
    span_length: int = Field(ge=2, description="tokens per span")
    batch_size: int = Field(ge=1, description="rows per step")
    learning_rate: float = Field(gt=0, description="the learning rate")
    vocabulary: int = Field(ge=0, description="distinct random tokens to start with (0: the whole vocabulary from the first step)")
    doubling_steps: int = Field(
        ge=0, description="steps between doublings of `vocabulary`, until the whole vocabulary is in use (needed when `vocabulary` > 0)"
    )

    @model_validator(mode="after")
    def _spans_fit(self) -> CopyingParams:
        if self.context_length < 2 * self.span_length:
            raise ValueError("context_length must be at least 2 * span_length")
        if self.vocabulary and not self.doubling_steps:
            raise ValueError("vocabulary > 0 needs doubling_steps >= 1: the steps between doublings up to the whole vocabulary")
        return self


class CopyingOverrides(Strict):
    """A tiny model's own copy lessons (its spec's `copying` as a mapping): `init.copying` with the fields it names
    replaced."""

    steps: int | None = Field(None, description="replaces `init.copying.steps`")
    context_length: int | None = Field(None, description="replaces `init.copying.context_length`")
    spans: int | None = Field(None, description="replaces `init.copying.spans`")
    span_length: int | None = Field(None, description="replaces `init.copying.span_length`")
    batch_size: int | None = Field(None, description="replaces `init.copying.batch_size`")
    learning_rate: float | None = Field(None, description="replaces `init.copying.learning_rate`")
    vocabulary: int | None = Field(None, description="replaces `init.copying.vocabulary`")
    doubling_steps: int | None = Field(None, description="replaces `init.copying.doubling_steps`")


class InitParams(Strict):
    models: dict[str, ModelSpec] = Field(description="one spec per model name, by `kind`; `pipeline.models` picks which run")
    tokenizer: TokenizerParams = Field(
        description="the byte-level BPE tokenizer of tiny models, trained on the task corpora and the instruction data"
    )
    copying: CopyingParams = Field(description="the copy lessons of tiny models whose spec sets `copying`")

    @model_validator(mode="after")
    def _lessons_valid(self) -> InitParams:
        for name in self.models:
            try:
                self.copying_for(name)
            except ValidationError as error:
                first = error.errors()[0]
                where = "".join(f".{part}" for part in first["loc"])
                raise ValueError(f"models.{name}.copying{where}: {str(first['msg']).removeprefix('Value error, ')}") from None
        return self

    def copying_for(self, model: str) -> CopyingParams | None:
        """The copy lessons of a tiny model (None: none, or not a tiny model): init.copying, or init.copying with the
        fields its spec's `copying:` mapping gives replaced."""
        spec = self.models[model]
        if not isinstance(spec, TinyGemma | TinyMamba2) or spec.copying is False:
            return None
        if spec.copying is True:
            return self.copying
        return CopyingParams.model_validate({**self.copying.model_dump(), **spec.copying.model_dump(exclude_none=True)})
