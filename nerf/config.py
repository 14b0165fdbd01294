"""One configargparse parser built from the components' config dataclasses (docs/INTERFACES.md "Config").

Every dataclass field is a `--flag` and a `key = value` line of a `--config` file; names are unique across the
dataclasses. Help texts are the fields' trailing comments. `save_resolved` writes a file that parses back to
the same values.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

import configargparse

from data_util.fileio import save_text

# Choices for fields whose dataclass does not list them (field metadata {"choices": ...} wins).
CHOICES = {
    "backbone": ("mlp", "hash"),
    "sampling": ("semantic", "uniform"),
    "bg": ("image", "white", "black"),
    "device": ("auto", "cpu", "cuda"),
}


@dataclasses.dataclass
class Config:
    """The parsed configuration: one dataclass instance per component, plus the config file used."""
    sections: dict[str, Any]  # section name (e.g. "data") -> dataclass instance
    config_file: str | None = None
    preset_note: str = ""  # what the device preset set (nerf/presets.py), printed by the trainer

    def __getattr__(self, name: str) -> Any:  # cfg.data, cfg.model, ...
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)


def default_sections() -> dict[str, type]:
    """The components' config dataclasses, by section name."""
    from nerf.dataset import DataConfig
    from nerf.model import ModelConfig
    from nerf.pipeline import RenderConfig
    from nerf.sampler import SamplerConfig
    from nerf.trainer import TrainConfig

    return {"data": DataConfig, "model": ModelConfig, "render": RenderConfig, "sampler": SamplerConfig,
            "train": TrainConfig}


def str2bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ("true", "yes", "1", "on"):
        return True
    if low in ("false", "no", "0", "off"):
        return False
    raise configargparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _comments(cls: type) -> dict[str, str]:
    """Trailing `# comment` of each field line in the dataclass's source (its help text)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, re.MULTILINE):
        out.setdefault(m.group(1), m.group(2).strip())
    return out


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _none_or(conv):
    return lambda s: None if str(s).strip().lower() == "none" else conv(s)


def _add_field(group, f: dataclasses.Field, tp: Any, help_text: str) -> None:
    base, optional = _unwrap_optional(tp)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    kwargs: dict[str, Any] = {"default": default, "help": f"{help_text} (default: {default})".strip()}
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        elem = (typing.get_args(base) or (str,))[0]
        kwargs.update(nargs="*", type=_none_or(elem))
    elif base is bool:
        kwargs.update(type=str2bool, nargs="?", const=True, metavar="{true,false}")
    elif base in (int, float, str):
        kwargs.update(type=_none_or(base) if optional else base)
    else:
        raise TypeError(f"config field {f.name}: unsupported type {tp}")
    choices = f.metadata.get("choices", CHOICES.get(f.name))
    if choices and base is str:
        kwargs["choices"] = list(choices)
    group.add_argument(f"--{f.name}", **kwargs)


def build_parser(sections: dict[str, type] | None = None) -> configargparse.ArgParser:
    """The parser: `--config FILE` plus one flag per field of every section's dataclass."""
    sections = sections or default_sections()
    p = configargparse.ArgParser(description="Train SSP-NeRF (every key is also a config-file line `key = value`).",
                                 config_file_parser_class=configargparse.DefaultConfigFileParser)
    p.add_argument("--config", is_config_file=True, help="config file (key = value lines)")
    seen: dict[str, str] = {"config": "parser"}
    for name, cls in sections.items():
        group = p.add_argument_group(name)
        hints = typing.get_type_hints(cls)
        helps = _comments(cls)
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise ValueError(f"config key '{f.name}' is defined twice ({seen[f.name]} and {cls.__name__})")
            seen[f.name] = cls.__name__
            _add_field(group, f, hints[f.name], f.metadata.get("help", helps.get(f.name, "")))
    return p


def parse(argv: list[str] | None = None, sections: dict[str, type] | None = None) -> Config:
    """Parse the command line (and --config file) into the section dataclasses; then the device preset
    (nerf/presets.py) fills the keys the user did not set, when the sections have a `preset` key."""
    sections = sections or default_sections()
    parser = build_parser(sections)
    ns = vars(parser.parse_args(argv))
    note = ""
    if "preset" in ns:
        from nerf.presets import describe, preset_values, resolve_preset

        explicit = explicit_keys(parser, argv)
        name = resolve_preset(ns["preset"], ns.get("device", "auto"))
        applied = preset_values(name, explicit)
        ns.update(applied, preset=name)
        note = describe(name, applied, explicit)
    out = {}
    for name, cls in sections.items():
        out[name] = cls(**{f.name: ns[f.name] for f in dataclasses.fields(cls)})
    cfg = Config(out, ns.get("config"), note)
    _default_expname(cfg)
    return cfg


_UNSET = object()


def explicit_keys(parser: configargparse.ArgParser, argv: list[str] | None) -> set[str]:
    """The keys given on the command line or in the --config file (parsed again with every default unset)."""
    keys = [a.dest for a in parser._actions if a.dest not in ("help", "config")]
    saved = {k: parser.get_default(k) for k in keys}
    parser.set_defaults(**{k: _UNSET for k in keys})
    try:
        ns = vars(parser.parse_args(argv))
    finally:
        parser.set_defaults(**saved)
    return {k for k in keys if ns.get(k, _UNSET) is not _UNSET}


def _default_expname(cfg: Config) -> None:
    """An empty `expname` defaults to the config file's stem, else the data folder's name."""
    for sec in cfg.sections.values():
        if getattr(sec, "expname", None) == "":
            datadir = next((getattr(s, "datadir") for s in cfg.sections.values() if hasattr(s, "datadir")), "")
            stem = Path(cfg.config_file).stem if cfg.config_file else Path(str(datadir).rstrip("/")).name
            sec.expname = stem or "run"


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def resolved_text(cfg: Config) -> str:
    """`key = value` lines of every field, one block per section."""
    lines = ["# resolved configuration (python train.py --config this_file reproduces it)"]
    for name, sec in cfg.sections.items():
        lines.append(f"\n# [{name}]")
        for f in dataclasses.fields(sec):
            lines.append(f"{f.name} = {_format(getattr(sec, f.name))}")
    return "\n".join(lines) + "\n"


def save_resolved(path: str | Path, cfg: Config) -> None:
    """Write the resolved config atomically (re-loads to the same values)."""
    save_text(path, resolved_text(cfg))


def as_dict(cfg: Config) -> dict[str, Any]:
    """All fields, flat {key: value}."""
    return {f.name: getattr(sec, f.name) for sec in cfg.sections.values() for f in dataclasses.fields(sec)}


if __name__ == "__main__":  # print the resolved config of a command line
    sys.stdout.write(resolved_text(parse()))
