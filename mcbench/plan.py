"""The plan stage: which candidates a run takes through the stages, and the hardware profiles they belong to.

Before the model is loaded the plan is what can be checked without it (names, recipes, the data passes need,
the profiles); once the model is loaded the default run's plan narrows to the search space of its kind.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mcbench.base.text import first_line
from mcbench.bench.metrics import AUTO
from mcbench.config import ConfigError, RunConfig
from mcbench.optimizer.artifact import Artifact
from mcbench.optimizer.model_kind import ModelKind, detect_kind
from mcbench.optimizer.passes import check_needs
from mcbench.optimizer.profiles import Profile, ProfileError, find_profile
from mcbench.optimizer.recipe_syntax import parse_recipe
from mcbench.optimizer.recipes import (
    RecipeError,
    VariantSpec,
    all_kind_variants,
    default_variants,
    lossless_first,
    parse_named_recipe,
    profile_recipe_variants,
    profile_variants,
    recipe_variants,
    search_space,
    with_batch_sizes,
)
from mcbench.optimizer.targets import hardware_mismatch


@dataclass
class Plan:
    """The candidates in the order they are screened, the profiles they name, and the model's kind once known."""

    specs: list[VariantSpec]
    profiles: dict[str, Profile] = field(default_factory=dict)
    kind: dict[str, str] | None = None

    @property
    def baseline(self) -> str | None:
        return next((s.name for s in self.specs if s.baseline), None)


def uses_default_matrix(config: RunConfig) -> bool:
    return not config.profiles and not config.recipes


def plan_before_loading(config: RunConfig) -> Plan:
    """The default variants, or the FP32 baseline plus each --profile's matrix, names prefixed by profile.

    Before the model is loaded its kind is unknown: the default plan is then every candidate some kind's
    search space has (plan_for_model narrows it to the model's kind once loaded).
    """
    from_torch = config.from_torch
    if uses_default_matrix(config):
        return Plan(select_variants(all_kind_variants(from_torch), config.variants))
    specs = [s for s in default_variants(from_torch) if s.baseline] + recipe_matrix(config)
    profiles = {}
    for name in config.profiles:
        try:
            profile = find_profile(name)
        except ProfileError as exc:
            raise ConfigError(str(exc)) from exc
        profiles[profile.name] = profile
        cpu_mismatch = hardware_mismatch(profile)
        try:
            recipes = profile_recipe_variants(profile, config.source_format)
        except RecipeError as exc:
            raise ConfigError(f"profile {profile.name}: recipes: {exc}") from exc
        for s in with_batch_sizes(profile_variants(profile, from_torch) + recipes, profile.batch_sizes):
            skip = cpu_mismatch if s.target.device == "cpu" else None
            specs.append(replace(s, name=f"{profile.name}:{s.name}", profile=profile.name, skip=skip))
    return Plan(select_variants(unique_names(specs), config.variants), profiles)


def workload_data(config: RunConfig) -> set[str]:
    """The data a run will have for passes, known before any work: calibration always (generated
    inputs when no dataset is given), labelled validation data with the demo or a labelled dataset that may be a
    classification's (`--task classification`, or `auto`, which decides on the outputs)."""
    has_labels = config.dataset is not None or config.labels_file is not None
    labelled = config.model is None or (has_labels and config.task in ("classification", AUTO))
    return {"calibration", "validation"} if labelled else {"calibration"}


def check_data_needs(specs: list[VariantSpec], available: set[str]) -> None:
    """Refuse, before training or loading anything, a variant whose passes need data this run lacks."""
    for spec in specs:
        try:
            check_needs(tuple(s for text in spec.recipe for s in parse_recipe(text)), available)
        except RecipeError as exc:
            raise ConfigError(f"variant {spec.name}: {exc}") from exc


def say_plan(plan: Plan, say: Callable[[str], None]) -> None:
    """The model's kind and why each candidate is in the search, where the run searches the kind's space."""
    if plan.kind:
        say(f"model kind: {plan.kind['kind']} ({plan.kind['reason']})")
        for spec in plan.specs:
            say(f"  {spec.name}: {spec.why}")


def plan_for_model(config: RunConfig, before: Plan, base: Artifact, can_train: bool) -> Plan:
    """The plan once the model is loaded: for the default run, the search space of the model's kind."""
    if not uses_default_matrix(config):
        return before
    try:
        kind = detect_kind(base)
    except Exception as exc:  # an unreadable graph still gets the 0.1 matrix, with the reason recorded
        kind = ModelKind("other", f"not inspected: {type(exc).__name__}: {first_line(exc)}")
    space = narrowed(config, search_space(kind.kind, config.from_torch, can_train))
    return Plan(select_variants(space, config.variants), before.profiles, kind.to_dict())


def narrowed(config: RunConfig, space: list[VariantSpec]) -> list[VariantSpec]:
    """The search space as the run file's [search] narrows (exclude) and extends (add) it; an added candidate that
    keeps FP32 numerics is screened with the space's lossless ones, before any lossy candidate."""
    kept = [s for s in space if s.baseline or not any(fnmatch.fnmatch(s.name, p) for p in config.search_exclude)]
    added = []
    for text in config.search_add:
        try:
            added += recipe_variants(parse_named_recipe(text), config.source_format)
        except RecipeError as exc:
            raise ConfigError(f"[search] add {text!r}: {exc}") from exc
    return lossless_first(unique_names(kept + [replace(s, why=s.why or "added by the run file's [search]")
                                               for s in added]))


def recipe_matrix(config: RunConfig) -> list[VariantSpec]:
    """The variants of each --recipe, checked against the passes before any work (ConfigError if one cannot)."""
    specs: list[VariantSpec] = []
    for text in config.recipes:
        try:
            specs += recipe_variants(parse_named_recipe(text), config.source_format)
        except RecipeError as exc:
            raise ConfigError(f"--recipe {text!r}: {exc}") from exc
    return specs


def unique_names(specs: list[VariantSpec]) -> list[VariantSpec]:
    seen: dict[str, str] = {}
    for s in specs:
        if s.name in seen and seen[s.name] != "+".join(s.recipe):
            raise ConfigError(f"two recipes give the variant name {s.name!r}; name them with NAME=RECIPE")
        seen[s.name] = "+".join(s.recipe)
    return [s for i, s in enumerate(specs) if s.name not in {t.name for t in specs[:i]}]


def select_variants(specs: list[VariantSpec], names: tuple[str, ...]) -> list[VariantSpec]:
    if not names:
        return specs
    known = {s.name for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; this model has: {', '.join(sorted(known))}")
    baseline = [s for s in specs if s.baseline]
    return baseline + [s for s in specs if s.name in names and not s.baseline]

