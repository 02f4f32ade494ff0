"""A study: any folder with a ``codebook.yaml``.

``study.yaml`` names the study, its districts and the source types (with the labels reports
print); ``transcripts/<DISTRICT>/`` holds the sessions. :func:`load_study` reads it all and
returns every problem found, never only the first.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from .codebook import Codebook, load_codebook
from .errors import DataError, Problem, UsageError, errors_only
from .files import LineDict, YamlError, check_name, decode_text, is_valid_name, load_yaml
from .transcripts import Transcript, iter_transcript_files, load_transcript

log = logging.getLogger("casestudy")

DEFAULT_SOURCE_TYPES = {
    "teacher_focus_group": "Teacher Focus Group",
    "student_focus_group": "Student Focus Group",
    "parent_focus_group": "Parent Focus Group",
    "school_leader_interview": "School Leader Interview",
    "district_administrator_focus_group": "District Administrator Focus Group",
    "classroom_observation": "Classroom Observation",
}


@dataclass(frozen=True)
class District:
    id: str
    name: str
    label: str  # short label used in footnotes: "SCV"
    state: str = ""
    network: str = ""
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    districts: dict[str, District]
    source_types: dict[str, str]
    roles: dict[str, str]
    synthetic: bool = False
    description: str = ""


@dataclass(frozen=True)
class Study:
    root: Path
    config: StudyConfig
    codebook: Codebook
    transcripts: tuple[Transcript, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def districts(self) -> dict[str, District]:
        return self.config.districts

    def district(self, district_id: str) -> District:
        check_name(district_id, "district")
        if district_id not in self.config.districts:
            known = ", ".join(self.config.districts) or "none"
            raise UsageError(f"unknown district {district_id!r}; study.yaml lists: {known}")
        return self.config.districts[district_id]

    def sources(self, district: str | None = None, source_type: str | None = None) -> list[Transcript]:
        return [t for t in self.transcripts
                if (district is None or t.district == district) and (source_type is None or t.source_type == source_type)]

    def source(self, source_id: str) -> Transcript:
        for transcript in self.transcripts:
            if transcript.id == source_id:
                return transcript
        raise UsageError(f"unknown source {source_id!r}")

    def source_label(self, transcript: Transcript) -> str:
        """The footnote label of a source: "SCV Teacher Focus Group"."""
        district = self.config.districts.get(transcript.district)
        prefix = district.label if district else transcript.district
        return f"{prefix} {self.config.source_types.get(transcript.source_type, transcript.source_type)}"


def find_study_root(path: Path | str | None) -> Path:
    root = Path(path or ".").expanduser()
    if not root.exists():
        raise UsageError(f"study folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a folder; --study takes the folder that holds codebook.yaml")
    if not (root / "codebook.yaml").is_file():
        raise UsageError(f"{str(root)!r} is not a study: it has no codebook.yaml")
    return root.resolve()


def load_config(root: Path) -> tuple[StudyConfig, list[Problem]]:
    rel = "study.yaml"
    path = root / rel
    empty = StudyConfig(name=root.name, districts={}, source_types=dict(DEFAULT_SOURCE_TYPES), roles={})
    if not path.exists():
        return empty, [Problem(rel, None, "missing-file", "the study has no study.yaml naming its districts and source types")]
    text, _ = decode_text(path.read_bytes())
    try:
        data = load_yaml(text)
    except YamlError as exc:
        return empty, [Problem(rel, exc.line, "bad-yaml", exc.message)]
    if not isinstance(data, LineDict):
        return empty, [Problem(rel, 1, "bad-study", "study.yaml must be a mapping with name, districts and source_types")]
    problems: list[Problem] = [Problem(rel, line, "duplicate-key", f"key {key!r} appears twice") for key, line in data.duplicate_keys]
    districts: dict[str, District] = {}
    raw_districts = data.get("districts")
    if not isinstance(raw_districts, dict) or not raw_districts:
        problems.append(Problem(rel, data.line_of("districts"), "bad-study", "'districts' must map district ids to their details"))
        raw_districts = {}
    problems += [Problem(rel, line, "duplicate-district", f"district {key!r} is listed twice")
                 for key, line in getattr(raw_districts, "duplicate_keys", [])]
    for district_id, info in raw_districts.items():
        line = raw_districts.line_of(district_id)
        if not is_valid_name(district_id):
            problems.append(Problem(rel, line, "bad-district-id",
                                    f"district id {district_id!r} must be letters, digits, '-' or '_' (it names folders)"))
            continue
        info = info if isinstance(info, dict) else {}
        if not info.get("name"):
            problems.append(Problem(rel, line, "missing-field", f"district {district_id!r} has no name"))
        districts[str(district_id)] = District(
            id=str(district_id), name=str(info.get("name") or district_id), label=str(info.get("label") or district_id),
            state=str(info.get("state") or ""), network=str(info.get("network") or ""), context=dict(info.get("context") or {}),
        )
    source_types = data.get("source_types") or DEFAULT_SOURCE_TYPES
    if not isinstance(source_types, dict):
        problems.append(Problem(rel, data.line_of("source_types"), "bad-study", "'source_types' must map ids to display labels"))
        source_types = DEFAULT_SOURCE_TYPES
    roles = data.get("roles") or {}
    if not isinstance(roles, dict):
        problems.append(Problem(rel, data.line_of("roles"), "bad-study", "'roles' must map role ids to display labels"))
        roles = {}
    config = StudyConfig(
        name=str(data.get("name") or root.name), districts=districts,
        source_types={str(k): str(v) for k, v in source_types.items()},
        roles={str(k): str(v) for k, v in roles.items()},
        synthetic=bool(data.get("synthetic", False)), description=str(data.get("description") or ""),
    )
    return config, problems


def load_study(path: Path | str | None = None, *, progress: bool = False, strict: bool = False) -> Study:
    """Load a whole study. Problems are collected on ``study.problems``; with ``strict`` a study
    that has errors raises :class:`DataError`. A study that cannot be used at all (no folder,
    no codebook, unreadable codebook) raises :class:`UsageError` or :class:`DataError`."""
    root = find_study_root(path)
    config, problems = load_config(root)
    codebook, codebook_problems = load_codebook(root / "codebook.yaml")
    problems += codebook_problems
    if codebook is None:
        raise DataError("the codebook cannot be read", problems)
    files = list(iter_transcript_files(root / "transcripts"))
    transcripts: list[Transcript] = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("Reading transcripts", total=len(files))
        for district_dir, path_ in files:
            transcript, found = load_transcript(path_, root, district_dir)
            problems += found
            if transcript is not None:
                problems += _check_transcript(transcript, district_dir, config)
                transcripts.append(transcript)
            bar.advance(task)
    problems += _check_duplicates(transcripts)
    study = Study(root=root, config=config, codebook=codebook, transcripts=tuple(transcripts), problems=tuple(problems))
    if strict and errors_only(problems):
        raise DataError(f"the study has {len(errors_only(problems))} problem(s)", problems)
    return study


def _check_transcript(t: Transcript, district_dir: str, config: StudyConfig) -> list[Problem]:
    problems = []
    line = t.meta_lines.get
    if not is_valid_name(district_dir):
        problems.append(Problem(t.path, None, "bad-district-id", f"folder name {district_dir!r} cannot be a district id"))
    if t.district and t.district not in config.districts:
        problems.append(Problem(t.meta_path, line("district"), "unknown-district",
                                f"district {t.district!r} is not in study.yaml ({', '.join(config.districts) or 'none'})"))
    elif t.district and t.district != district_dir:
        problems.append(Problem(t.meta_path, line("district"), "district-mismatch",
                                f"the metadata says district {t.district!r} but the file is in transcripts/{district_dir}/"))
    if t.source_type and t.source_type not in config.source_types:
        problems.append(Problem(t.meta_path, line("source_type"), "unknown-source-type",
                                f"source type {t.source_type!r} is not in study.yaml ({', '.join(config.source_types)})"))
    for label, role in t.participants.items():
        if config.roles and role not in config.roles:
            problems.append(Problem(t.meta_path, line("participants"), "unknown-role",
                                    f"participant {label!r} has role {role!r}, which study.yaml does not list ({', '.join(config.roles)})"))
    if t.facilitator and t.facilitator not in t.participants:
        problems.append(Problem(t.meta_path, line("facilitator"), "unknown-speaker",
                                f"the facilitator {t.facilitator!r} is not among the participants"))
    spoke = {turn.speaker for turn in t.turns}
    for label in t.participants:
        if t.turns and label not in spoke:
            problems.append(Problem(t.meta_path, line("participants"), "silent-participant",
                                    f"participant {label!r} never speaks", "warning"))
    return problems


def _check_duplicates(transcripts: list[Transcript]) -> list[Problem]:
    counts = Counter(t.id for t in transcripts)
    return [Problem(t.path, None, "duplicate-source", f"another file has the same source id {t.id!r} (same name, other extension)")
            for t in transcripts if counts[t.id] > 1]


@dataclass(frozen=True)
class Summary:
    districts: int
    sources: int
    speakers: int
    words: int
    turns: int
    sentences: int
    codes: int
    by_district: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("districts", "sources", "speakers", "words", "turns", "sentences", "codes", "by_district")}


def summarize(study: Study) -> Summary:
    by_district: dict[str, dict[str, int]] = {}
    for district in study.config.districts:
        sources = study.sources(district)
        by_district[district] = {
            "sources": len(sources),
            "words": sum(t.words for t in sources),
            "turns": sum(len(t.turns) for t in sources),
        }
    transcripts = study.transcripts
    return Summary(
        districts=len(study.config.districts),
        sources=len(transcripts),
        speakers=sum(len(t.participants) for t in transcripts),
        words=sum(t.words for t in transcripts),
        turns=sum(len(t.turns) for t in transcripts),
        sentences=sum(1 for t in transcripts for _ in t.sentences),
        codes=len(study.codebook.codes),
        by_district=by_district,
    )


def segments(study: Study, district: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
    """Every sentence as a flat record (for CSV/JSONL export and pandas)."""
    if district is not None:
        study.district(district)
    rows = []
    for t in study.sources(district):
        if source is not None and t.id != source and t.id.split("/", 1)[-1] != source:
            continue
        label = study.source_label(t)
        for turn in t.turns:
            for s in turn.sentences:
                rows.append({
                    "sentence_id": s.id, "turn_id": turn.id, "source_id": t.id, "district": t.district,
                    "source_type": t.source_type, "source_label": label, "speaker": turn.speaker,
                    "role": turn.role, "path": t.path, "line": s.line, "start": s.start, "end": s.end,
                    "sha256": t.sha256, "text": s.text,
                })
    return rows
