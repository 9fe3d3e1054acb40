"""The settings of a ``tsn-train fit`` run from what its command line gave: a run's config.json
(``--config``), the options given, a preset, and the defaults (``tsn_train.config.resolve``)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from .config import FitConfig, load_config, resolve

REQUIRED = ("modality", "store", "train_list", "out")  # "store": --store or --videos
SOURCES = ("store", "videos")  # exactly one of them


class SettingsMistake(ValueError):
    """The options given cannot make a run's settings (a usage error): one missing, or --preset
    beside --config."""


def settings_of(given: Mapping[str, Any], config_file: Optional[str] = None,
                preset: Optional[str] = None) -> FitConfig:
    """The run's settings: ``given`` (a FitConfig field's option; None: not given), over
    ``config_file``'s settings or else ``preset``'s, over the defaults. Raises SettingsMistake
    for a usage error, ValueError for a config file or preset that cannot be read."""
    options = dict(given)
    if config_file:
        if preset:
            raise SettingsMistake("--config holds its run's settings, its preset's included: give "
                                  "--preset or --config, not both")
        recorded = load_config(config_file)
        if any(options.get(k) for k in SOURCES):  # a source given replaces the recorded one
            recorded = {k: v for k, v in recorded.items() if k not in SOURCES}
        options = {k: (recorded.get(k) if v is None else v) for k, v in options.items()}
    sources = [k for k in SOURCES if options.get(k)]
    if len(sources) > 1:
        raise SettingsMistake("--store and --videos both given: read a tsn-prep store or video files, "
                              "not both")
    missing = ["--store (or --videos)" if k == "store" else f"--{k.replace('_', '-')}" for k in REQUIRED
               if not (sources if k == "store" else options[k])]
    if missing:
        raise SettingsMistake(f"missing {', '.join(missing)} (give {'it' if len(missing) == 1 else 'them'}, "
                              "or --config with a run's config.json)")
    return resolve(options, preset)
