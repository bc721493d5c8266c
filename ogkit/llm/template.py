"""Deterministic chat-template rendering.

The template is the model's own (``chat_template`` in the bundle's
``tokenizer_config.json``), so it is covered by the model id. ogkit renders it itself —
Jinja2's immutable sandbox with ``trim_blocks`` and ``lstrip_blocks`` on, the variables
``messages``, ``add_generation_prompt`` (true), ``bos_token`` and ``eos_token``, and a
``raise_exception`` helper — never the runtime's own renderer, so the same request and
model always give the same prompt text, and a verifier renders it again. Jinja2's two
sources of randomness are taken out of the environment: the ``lipsum`` global and the
``random`` filter (a template naming the filter is refused at load; calling ``lipsum``
fails to render, the same way for the node and every verifier).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ogkit.errors import ConfigError, InvalidModelError

__all__ = ["ChatTemplate", "render_chat"]


class _TemplateRaised(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateRaised(message)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    # Nothing a template renders may depend on chance: a model owner's template drawing
    # random text would make an honest node's prompt differ from every verifier's.
    env.globals.pop("lipsum", None)
    env.filters.pop("random", None)
    env.globals["raise_exception"] = _raise
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise InvalidModelError(f"the model's chat template does not parse: {exc}") from None


class ChatTemplate:
    """A model's chat template with its special tokens."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        if not isinstance(source, str) or not source:
            raise InvalidModelError("the model has no chat template (tokenizer_config.json)")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        _compile(source)

    @classmethod
    def from_tokenizer_config(cls, config: Mapping[str, Any]) -> ChatTemplate:
        source = config.get("chat_template")
        if isinstance(source, list):  # [{"name": ..., "template": ...}]: the default one
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
        return cls(
            source,
            bos_token=_token(config.get("bos_token")),
            eos_token=_token(config.get("eos_token")),
        )

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        try:
            return _compile(self.source).render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except _TemplateRaised as exc:
            raise ConfigError(f"the model's chat template refuses these messages: {exc}") from None
        except Exception as exc:  # the template is the model's: its failures are ours to name
            raise ConfigError(
                f"the model's chat template fails on these messages ({type(exc).__name__}: {exc})"
            ) from None


def _token(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "<s>", ...}
        value = value.get("content")
    return value if isinstance(value, str) else ""


def render_chat(template: ChatTemplate, messages: Sequence[Mapping[str, str]]) -> str:
    return template.render(messages)
