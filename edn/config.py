"""Typed configuration: nested dataclasses <-> dicts, loaded from YAML/JSON with dotted overrides."""
from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, TypeVar

from edn.errors import ConfigError

T = TypeVar("T")


def parse_size(text: str) -> tuple[int, int]:
    """"256x128" -> (256, 128): a frame size WIDTHxHEIGHT, both positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise ConfigError(f"expected WIDTHxHEIGHT, e.g. 256x256, not {text!r}")
    return w, h


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build `cls` from a dict, recursing into dataclass fields; unknown keys and values of the
    wrong type are an error. A nested dataclass given in part keeps the rest of the field's own
    default, not its class's (TrainConfig.face_discriminator is a DiscriminatorConfig with one
    scale, where the class has two: `face_discriminator.ndf=32` must not bring the second back)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown settings {sorted(unknown)}; known: {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            default = _field_default(fields[key])
            value = from_dict(hint, _merge(to_dict(default), value) if dataclasses.is_dataclass(default) else value,
                              f"{prefix}{key}.")
        kwargs[key] = _typed(f"{prefix}{key}", hint, value)
    return cls(**kwargs)


_KINDS = {float: "a number", int: "a whole number", bool: "true or false", str: "text",
          list: "a list, e.g. [a, b]", dict: "a mapping, e.g. {a: 1}"}


def _typed(name: str, hint: Any, value: Any) -> Any:
    """`value` as the setting's declared type, or a ConfigError naming the setting: caught here, a
    wrong type would otherwise surface as a traceback from deep inside a training worker. YAML
    reads `5e-5` as text (it wants `5.0e-5`), so a float setting takes a number written so."""
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, bool):  # bool is an int to Python, but true is no step count
        if hint is float and isinstance(value, int):
            return float(value)
        if hint is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if hint is str and isinstance(value, int):  # body_model=3: a registered version
            return str(value)
    if hint in _KINDS and (not isinstance(value, hint) or isinstance(value, bool) and hint is not bool):
        raise ConfigError(f"setting {name}: expected {_KINDS[hint]}, not {value!r}"
                          + (" (quote it to give text)" if hint is str and value is not None else ""))
    return value


def _field_default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`a.b=value` strings (value parsed as YAML: numbers, booleans, lists) into a nested dict."""
    import yaml  # here, not at the top: edn.train.loop imports this module where PyYAML may be absent (gpu_check)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: its value is not YAML: {e}") from None
    return data


PRESETS = os.path.join(os.path.dirname(__file__), "configs")


def preset_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(PRESETS) if f.endswith(".yaml"))


def load_config(cls: type[T], url: str | None = None, overrides: list[str] | None = None,
                flags: dict | None = None) -> T:
    """Defaults, then the file at `url` (or a preset of edn/configs/ by name), then `flags` (a
    command's own options), then the `key=value` overrides: each later source wins."""
    data: dict = {}
    if url and url in preset_names() and not os.path.exists(url):
        url = os.path.join(PRESETS, f"{url}.yaml")
    if url:
        import yaml

        from edn.storage import read_bytes  # fsspec and pyarrow: only when a file is read
        try:
            loaded = yaml.safe_load(read_bytes(url)) or {}
        except FileNotFoundError:
            raise ConfigError(f"{url}: no such config file, nor a preset ({', '.join(preset_names())})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{url}: not YAML or JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{url}: a config file must hold a mapping of settings")
        data = loaded
    data = _merge(data, flags or {})
    return from_dict(cls, apply_overrides(data, overrides or []))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
