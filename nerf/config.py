"""The configuration: one configargparse parser from the components' sections (docs/DESIGN.md section 9).

Each component owns a dataclass, its section: `DataConfig` (nerf/dataset.py), `ModelConfig` (nerf/model.py),
`RenderConfig` (nerf/pipeline.py), `SamplerConfig` (nerf/sampler.py), `TrainConfig` (nerf/trainer.py). Every field
is a `--flag` and a `key = value` line of a `--config` file. Field metadata says:
- `key`: the flag's name when the field's own name is too generic to stand alone (the sampler's `alpha` is
  `sampler_alpha`), so that every key names its component; the dataclass keeps the short attribute;
- `aliases`: older names that keep working on the command line and in config files;
- `choices`: the allowed values of a string field.
Help texts are the fields' trailing comments. `save_resolved` writes every key under its current name; that file
parses back to the same values. This module imports the sections; no component imports it.
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

from common.fileio import save_text
from nerf import presets
from nerf.dataset import DataConfig
from nerf.model import ModelConfig
from nerf.pipeline import RenderConfig
from nerf.sampler import SamplerConfig
from nerf.trainer import TrainConfig

SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "render": RenderConfig,
                             "sampler": SamplerConfig, "train": TrainConfig}


@dataclasses.dataclass
class Config:
    """The parsed configuration: one dataclass instance per section, plus the config file used."""
    sections: dict[str, Any]  # section name (e.g. "data") -> dataclass instance
    config_file: str | None = None
    preset_note: str = ""  # what the device preset set (nerf/presets.py), printed by the trainer
    explicit: frozenset = frozenset()  # the keys the user set (command line or config file): data-driven choices keep them

    def __getattr__(self, name: str) -> Any:  # cfg.data, cfg.model, ...
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    def replace(self, section: str, **changes: Any) -> "Config":
        """A copy with some fields of one section changed (the instance itself is not modified)."""
        new = dict(self.sections, **{section: dataclasses.replace(self.sections[section], **changes)})
        return Config(new, self.config_file, self.preset_note, self.explicit)

    def resolved_text(self) -> str:
        return resolved_text(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config atomically (it re-loads to the same values)."""
        save_text(path, resolved_text(self))


def default_sections() -> dict[str, type]:
    """The components' config dataclasses, by section name."""
    return dict(SECTIONS)


def key_of(f: dataclasses.Field) -> str:
    """The config key (flag name) of a section field."""
    return f.metadata.get("key", f.name)


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
    help_text = f"{help_text} (default: {default})".strip().replace("%", "%%")  # argparse %-formats help strings
    kwargs: dict[str, Any] = {"default": default, "help": help_text}
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
    choices = f.metadata.get("choices")
    if choices and base is str:
        kwargs["choices"] = list(choices)
    names = [key_of(f), *f.metadata.get("aliases", ())]
    group.add_argument(*[f"--{n}" for n in names], dest=key_of(f), **kwargs)


def build_parser(sections: dict[str, type] | None = None) -> configargparse.ArgParser:
    """The parser: `--config FILE` plus one flag (and its aliases) per field of every section."""
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
            for key in (key_of(f), *f.metadata.get("aliases", ())):
                if key in seen:
                    raise ValueError(f"config key '{key}' is defined twice ({seen[key]} and {cls.__name__})")
                seen[key] = cls.__name__
            _add_field(group, f, hints[f.name], f.metadata.get("help", helps.get(f.name, "")))
    return p


def parse(argv: list[str] | None = None, sections: dict[str, type] | None = None) -> Config:
    """Parse the command line (and --config file) into the sections; the device preset (nerf/presets.py) fills
    the keys the user did not set (when a section has a `preset` key); an empty `expname` becomes the config
    file's stem, else the data folder's name."""
    sections = sections or default_sections()
    parser = build_parser(sections)
    ns = vars(parser.parse_args(argv))
    note = ""
    explicit = explicit_keys(parser, argv)
    if "preset" in ns:
        name = presets.resolve_preset(ns["preset"], ns.get("device", "auto"))
        applied = presets.preset_values(name, explicit)
        ns.update(applied, preset=name)
        note = presets.describe(name, applied, explicit)
    if ns.get("expname") == "":
        stem = Path(ns["config"]).stem if ns.get("config") else Path(str(ns.get("datadir", "")).rstrip("/")).name
        ns["expname"] = stem or "run"
    out = {name: cls(**{f.name: ns[key_of(f)] for f in dataclasses.fields(cls)}) for name, cls in sections.items()}
    return Config(out, ns.get("config"), note, frozenset(explicit))


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
            lines.append(f"{key_of(f)} = {_format(getattr(sec, f.name))}")
    return "\n".join(lines) + "\n"


def save_resolved(path: str | Path, cfg: Config) -> None:
    """Write the resolved config atomically (re-loads to the same values)."""
    cfg.save(path)


def as_dict(cfg: Config) -> dict[str, Any]:
    """All fields, flat {key: value}."""
    return {key_of(f): getattr(sec, f.name) for sec in cfg.sections.values() for f in dataclasses.fields(sec)}


if __name__ == "__main__":  # print the resolved config of a command line
    sys.stdout.write(resolved_text(parse()))
