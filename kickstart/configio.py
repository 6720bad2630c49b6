"""The config engine: nested dicts, YAML files and dotted overrides to typed, checked dataclasses.

It owns no section. Every section (the core's in :mod:`kickstart.config`, PBT's in
:mod:`kickstart.pbt.config`, each method's beside its method) is a dataclass that checks its values in
``__post_init__`` with the helpers below, so that every mistake is a one-line
:class:`~kickstart.errors.ConfigError` saying what is valid. The whole-run class is assembled from
the sections by :func:`kickstart.config.make_config`; this module only walks whatever dataclass it is
given (:func:`from_dict`, :func:`apply_overrides`, :func:`load`). Why apart from the sections: a
method's section may then import these helpers without importing the other sections, and the engine
stays the same whichever methods a run has.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from kickstart.errors import ConfigError

# -- checks every section uses ------------------------------------------------------------------------


def check(cond: bool, msg: str) -> None:
    """Raise ``ConfigError(msg)`` unless ``cond``."""
    if not cond:
        raise ConfigError(msg)


def choice(section: str, name: str, value: str, valid: tuple[str, ...]) -> None:
    check(value in valid, f"{section}.{name}={value!r} is not valid; choose one of: {', '.join(valid)}")


def positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, float):
        ok = ok and math.isfinite(value)
    check(ok, f"{section}.{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def unit(section: str, name: str, value: float) -> None:
    check(0.0 <= value <= 1.0, f"{section}.{name}={value!r} must be in [0, 1]")


# -- dicts to dataclasses -------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (after ``from __future__`` resolution)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(path, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path} has an invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r} must be a list")
        return [_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}={value!r} must be a mapping")
        k_tp, v_tp = typing.get_args(tp)
        return {_coerce(f"{path}.<key>", k, k_tp): _coerce(f"{path}.{k}", v, v_tp) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}={value!r} must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}={value!r} must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}={value!r} must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}={value!r} must be a string")
    if tp is Any:
        return value
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")


def unknown_key(path: str, key: str, valid: list[str]) -> ConfigError:
    """The one-line error for a key ``path.key`` that is not one of ``valid``, with the closest one."""
    where = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {where!r}{hint}; valid keys{' in ' + path if path else ''}: "
                       f"{', '.join(valid)}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key(path, str(key), names)
        kwargs[key] = _coerce(f"{path}.{key}" if path else key, value, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{path or 'config'}: {e}") from None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str], cls: type) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict for dataclass ``cls``,
    in place.

    Paths may go through mappings of sections, e.g. ``kickstart.teachers.breakout.rho=0.5`` or
    ``pbt.mutable.learning_rate.low=1e-4``.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. learner.learning_rate=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        node, node_cls, path = data, cls, ""
        i = 0
        while i < len(parts):
            part = parts[i]
            names = [f.name for f in dataclasses.fields(node_cls)]
            if part not in names:
                raise unknown_key(path, part, names)
            path = f"{path}.{part}" if path else part
            if i == len(parts) - 1:
                node[part] = value
                break
            tp = typing.get_type_hints(node_cls)[part]
            if typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                # a mapping of sections: the next part is an entry's name
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
                entry = parts[i + 1]
                path = f"{path}.{entry}"
                if i + 1 == len(parts) - 1:
                    node[entry] = value
                    break
                if not isinstance(node.get(entry), dict):
                    node[entry] = {}
                node, node_cls = node[entry], typing.get_args(tp)[1]
                i += 2
                continue
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"{path} is not a section; set it as {path}=value")
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, node_cls = node[part], tp
            i += 1
    return data


# -- files ----------------------------------------------------------------------------------------------

def read_yaml(path: str | Path) -> dict:
    """The mapping a YAML config file holds; a missing, unreadable, binary or malformed file is a
    one-line error that names an example to pass instead."""
    p = Path(path)
    if p.is_dir():
        hint = (f" (to continue the run in it: kickstart train --resume {p})"
                if (p / "config.yaml").is_file() else "")
        raise ConfigError(f"config file {str(p)!r} is a directory; pass a YAML file such as "
                          f"configs/minatar_breakout.yaml{hint}")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; pass a YAML file such as configs/minatar_breakout.yaml")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read ({e.strerror or e}); "
                          f"pass a readable YAML file such as configs/minatar_breakout.yaml") from None
    expected = "expected a YAML text file (UTF-8) such as configs/minatar_breakout.yaml"
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"config file {str(p)!r} is binary, not text (a NUL byte at offset {nul}); {expected}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}); {expected}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections (env, net, learner, runtime, run)")
    return data


def load(cls: type, path: str | Path | None = None, overrides: list[str] | None = None) -> Any:
    """A checked ``cls`` from a YAML file (the defaults when ``path`` is None) and dotted overrides.
    Nothing is resolved here (:func:`kickstart.config.resolve_config` is that step)."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, list(overrides or []), cls)
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
