"""The model registry in the store: every frozen model with its lineage, and one champion per channel.

Layout under the store root::

    blobs/<sha256>                         the model file (content-addressed, shared with everything else)
    registry/models/<id>.json              a model's record (id = <channel slug>-<sha256[:12]>)
    registry/channels/<channel>.json       the channel's champion and its promotion history

A channel is ``<spec name>/<model reference>`` (``demo/finetune.gete``): the same model of the same spec
across runs. ``promote`` can be gated by the spec (``registry.promote_gate``): the candidate must have a
lower error than the champion on the same test set (same dataset digest), else it is held back (exit 3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lamflow.workflows.errors import HeldBack, UsageError
from lamflow.workflows.spec.base import slug
from lamflow.workflows.store import trees
from lamflow.workflows.store.backends import Backend
from lamflow.workflows.timestamps import now

PREFIX = "registry"


class ModelRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    channel: str = Field(description="<spec name>/<model reference>")
    reference: str = Field(description="The spec's name for the model (finetune.gete, pretrain.water).")
    stage: str
    step: str
    sha256: str
    size: int
    run_id: str
    run_dir: str
    spec_sha256: str
    created_at: str = Field(default_factory=now)
    datasets: dict[str, str] = Field(
        default_factory=dict, description="Dataset the model learned from (transitively) -> content digest."
    )
    parents: list[dict[str, str]] = Field(
        default_factory=list, description="What it was made from: {reference, sha256} or {file, sha256}."
    )
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Test dataset (or '<dataset>@change-bias:<on>') -> errors."
    )
    test_data: dict[str, str] = Field(default_factory=dict, description="Test dataset -> content digest.")
    gate: dict[str, str] | None = Field(None, description="The spec's promote_gate {dataset, metric}.")
    tools: dict[str, str | None] = Field(default_factory=dict)


class Registry:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _get(self, key: str) -> dict[str, Any] | None:
        data = self.backend.get_bytes(key)
        return None if data is None else json.loads(data)

    def register(self, record: ModelRecord, model_file: Path) -> bool:
        """Store the model file and its record (once per id); False if it was already registered."""
        key = f"{PREFIX}/models/{record.id}.json"
        if self.backend.exists(key):
            return False
        blob = f"{trees.BLOBS}/{record.sha256}"
        if not self.backend.exists(blob):
            self.backend.put_file(model_file, blob)
        self.backend.put_bytes(key, record.model_dump_json(indent=2).encode())  # last: publishes it
        return True

    def models(self, channel: str | None = None) -> list[ModelRecord]:
        records = []
        for key in sorted(self.backend.keys(f"{PREFIX}/models/")):
            data = self._get(key)
            if data is not None:
                record = ModelRecord.model_validate(data)
                if channel is None or record.channel == channel:
                    records.append(record)
        return sorted(records, key=lambda r: (r.channel, r.created_at))

    def get(self, model_id: str) -> ModelRecord:
        data = self._get(f"{PREFIX}/models/{model_id}.json")
        if data is None:
            matches = [r for r in self.models() if r.id.startswith(model_id) or r.sha256.startswith(model_id)]
            if len(matches) != 1:
                found = "no model" if not matches else f"{len(matches)} models"
                raise UsageError(
                    f"{model_id}: {found} with this id in the registry (see `lamflow models list`)"
                )
            return matches[0]
        return ModelRecord.model_validate(data)

    def champion(self, channel: str) -> str | None:
        data = self._get(f"{PREFIX}/channels/{slug_channel(channel)}.json")
        return None if data is None else data.get("champion")

    def pull(self, model_id: str, dest: Path) -> ModelRecord:
        """Write the model file to ``dest`` (verified; a new file, never overwriting)."""
        record = self.get(model_id)
        if dest.exists():
            raise UsageError(f"{dest}: already exists (a pull never overwrites)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.pull")
        tmp.unlink(missing_ok=True)
        try:
            self.backend.get_file(f"{trees.BLOBS}/{record.sha256}", tmp)
        except KeyError:
            raise trees.CorruptObject(f"{record.id}: the model file is missing from the store") from None
        if trees.sha256_file(tmp) != record.sha256:
            tmp.unlink()
            raise trees.CorruptObject(f"{record.id}: the stored model file does not match its SHA-256")
        os.replace(tmp, dest)
        return record

    def promote(self, model_id: str, force: bool = False) -> tuple[ModelRecord, str | None]:
        """Make a model its channel's champion; returns (record, previous champion id).

        Raises :class:`HeldBack` when the record's gate says it does not beat the champion."""
        record = self.get(model_id)
        previous = self.champion(record.channel)
        if previous == record.id:
            return record, previous
        if previous is not None and record.gate and not force:
            _check_gate(record, self.get(previous))
        key = f"{PREFIX}/channels/{slug_channel(record.channel)}.json"
        history = (self._get(key) or {}).get("history", [])
        entry = {"champion": record.id, "promoted_at": now(), "previous": previous, "forced": force}
        self.backend.put_bytes(
            key,
            json.dumps({"channel": record.channel, **entry, "history": [*history, entry]}, indent=2).encode(),
        )
        return record, previous


def slug_channel(channel: str) -> str:
    return "--".join(slug(part) for part in channel.split("/"))


def _check_gate(candidate: ModelRecord, champion: ModelRecord) -> None:
    assert candidate.gate is not None
    dataset, metric = candidate.gate["dataset"], candidate.gate["metric"]
    where = f"{metric} on {dataset}"
    mine = candidate.metrics.get(dataset, {}).get(metric)
    theirs = champion.metrics.get(dataset, {}).get(metric)
    if mine is None:
        raise HeldBack(f"{candidate.id}: held back: it has no {where} to compare with the champion")
    if theirs is None:
        raise HeldBack(f"{candidate.id}: held back: champion {champion.id} has no {where} to compare with")
    if candidate.test_data.get(dataset) != champion.test_data.get(dataset):
        raise HeldBack(
            f"{candidate.id}: held back: {dataset} is not the same test set for both models "
            "(content differs); compare on one test set or promote with --force"
        )
    if not mine < theirs:
        raise HeldBack(
            f"{candidate.id}: held back: {where} is {mine:.6g}, "
            f"not below champion {champion.id}'s {theirs:.6g}"
        )


def run_records(
    plan: Any, run_dir: Path, summary: Any, gate: dict[str, str] | None, digest: Any
) -> list[tuple[ModelRecord, Path]]:
    """A record (and file) for every frozen model a finished run produced, with its lineage.

    ``plan`` is the run's Plan, ``summary`` its RunSummary, ``digest`` a step_cache.Digests."""
    from lamflow.workflows.compile.plan import ConvertedDatasets, DatasetBundle, LocalFile, StepOutput
    from lamflow.workflows.store.step_cache import toolchain

    steps = {s.key: s for s in plan.steps}

    def learned_from(key: str, seen: set[str]) -> set[str]:
        if key in seen:
            return set()
        seen.add(key)
        names: set[str] = set()
        for source in steps[key].artifacts.values():
            if isinstance(source, DatasetBundle | ConvertedDatasets):
                names.update(source.names)
            elif isinstance(source, StepOutput):
                names |= learned_from(source.step, seen)
        return names

    records = []
    for step in plan.steps:
        ref = step.model_ref
        if ref is None or ref not in summary.models:
            continue
        model_file = (run_dir / summary.models[ref]).resolve()
        sha = digest(model_file)
        parents = []
        for source in step.artifacts.values():
            if isinstance(source, StepOutput):
                upstream = steps[source.step]
                produced = summary.steps[source.step].outputs.get(source.name)
                label = upstream.model_ref or upstream.checkpoint_ref
                if label and produced:
                    parents.append({"reference": label, "sha256": digest((run_dir / produced).resolve())})
            elif isinstance(source, LocalFile):
                parents.append({"file": str(source.path), "sha256": digest(source.path)})
        # a transfer study's learning-curve rows measure models trained from this one, not this one
        tests = [t for t in summary.tests if t.model == ref and t.protocol not in ("finetune", "scratch")]
        metrics = {
            (
                t.dataset if t.change_bias_on is None else f"{t.dataset}@change-bias:{t.change_bias_on}"
            ): t.metrics
            for t in tests
        }
        channel = f"{plan.name}/{ref}"
        records.append(
            (
                ModelRecord(
                    id=f"{slug_channel(channel)}-{sha[:12]}",
                    channel=channel,
                    reference=ref,
                    stage=ref.partition(".")[0],
                    step=step.key,
                    sha256=sha,
                    size=model_file.stat().st_size,
                    run_id=summary.run_id,
                    run_dir=str(run_dir),
                    spec_sha256=summary.spec_sha256,
                    datasets={
                        n: digest(plan.dataset_paths[n]) for n in sorted(learned_from(step.key, set()))
                    },
                    parents=parents,
                    metrics=metrics,
                    test_data={t.dataset: digest(plan.dataset_paths[t.dataset]) for t in tests},
                    gate=gate,
                    tools=toolchain(),
                ),
                model_file,
            )
        )
    return records
