"""Write the sample study's synthetic surveys: surveys/<DISTRICT>/{students,staff}-{2022,2023}.csv.

ALL DATA WRITTEN HERE IS SYNTHETIC. The construct levels follow what the districts' transcripts
say about them and the reference report's pattern (students mostly 2.5 to 3 with student agency
lowest; staff higher than students and mostly improving from 2022 to 2023), with the reference's
sizes (about 1,200-1,700 students and 80-120 staff per wave).

Each answer comes from a simple latent model: the construct's target level + a respondent's
general leaning + their leaning on the construct + a fixed item offset + noise, rounded onto
1-4. The level is calibrated so the mean of item means lands on the target. Reverse-keyed items
are stored reversed; some items are missing at random (rates differ by item, as in the
reference's n ranges) and a few respondents skip a whole construct. Some items are stored as
response labels of either wording and the rest as numbers (the staff 2022 export uses labels
throughout, the 2023 one only for frequency items), as exports from survey tools do.

Run from the repository: ``.venv/bin/python scripts/make_sample_surveys.py`` (same output every
time: the generator is seeded per file).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from casestudy.files import atomic_write_text
from casestudy.survey import read_survey_spec

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240415
WAVES = (2022, 2023)

# Per district: respondents per wave, schools (with weights) and students' grade bands.
DISTRICTS = {
    "SCV35": {
        "students": {2022: 1480, 2023: 1745}, "staff": {2022: 123, 2023: 88},
        "schools": {"Desert Willow": 0.4, "Mesquite Canyon": 0.25, "Ocotillo Ridge": 0.2, "Santa Rita": 0.15},
        "grade_bands": {"3-5": 0.55, "6-8": 0.45},
    },
    "AUSD": {
        "students": {2022: 1310, 2023: 1380}, "staff": {2022: 96, 2023: 104},
        "schools": {"Canyon Ridge": 0.45, "Saguaro Vista": 0.3, "Pima Wash": 0.25},
        "grade_bands": {"6-8": 0.8, "3-5": 0.2},
    },
    "MPS": {
        "students": {2022: 1660, 2023: 1615}, "staff": {2022: 119, 2023: 113},
        "schools": {"Palo Verde": 0.35, "Red Mountain": 0.25, "Dobson Park": 0.2, "Salt River": 0.2},
        "grade_bands": {"3-5": 0.45, "6-8": 0.35, "9-12": 0.2},
    },
    "YUHSD": {
        "students": {2022: 1235, 2023: 1290}, "staff": {2022: 84, 2023: 92},
        "schools": {"Mesa Verde": 0.4, "Gila Valley": 0.35, "Colorado Bend": 0.25},
        "grade_bands": {"9-10": 0.55, "11-12": 0.45},
    },
}

# Target construct scores (mean of item means), 2022 and 2023.
TARGETS = {
    "SCV35": {  # the strongest district, strongest on student agency
        "students": {"student-agency": (2.38, 2.45), "supportive-relationships": (2.78, 2.76),
                     "equitable-environments": (2.70, 2.78), "learning-pathways": (2.58, 2.64),
                     "assessment-feedback": (2.62, 2.69)},
        "staff": {"shared-vision": (3.05, 3.22), "collaborative-culture": (3.10, 3.25),
                  "student-centered-instruction": (2.92, 3.12), "competency-assessment": (2.78, 3.04),
                  "flexible-environments": (2.85, 3.08), "learner-supports": (3.02, 3.18),
                  "professional-learning": (2.88, 3.10), "leadership-support": (2.95, 3.15),
                  "family-partnerships": (2.62, 2.86)},
    },
    "AUSD": {  # shared vision, leadership and PD strong; space and time a struggle; agency lowest
        "students": {"student-agency": (2.22, 2.28), "supportive-relationships": (2.80, 2.83),
                     "equitable-environments": (2.66, 2.70), "learning-pathways": (2.44, 2.47),
                     "assessment-feedback": (2.55, 2.60)},
        "staff": {"shared-vision": (3.12, 3.24), "collaborative-culture": (2.95, 3.05),
                  "student-centered-instruction": (2.80, 2.92), "competency-assessment": (2.70, 2.82),
                  "flexible-environments": (2.42, 2.50), "learner-supports": (2.85, 2.95),
                  "professional-learning": (3.05, 3.18), "leadership-support": (3.10, 3.22),
                  "family-partnerships": (2.65, 2.72)},
    },
    "MPS": {  # assessment and data strong; consistency and family communication weak
        "students": {"student-agency": (2.30, 2.36), "supportive-relationships": (2.70, 2.73),
                     "equitable-environments": (2.62, 2.66), "learning-pathways": (2.55, 2.58),
                     "assessment-feedback": (2.80, 2.85)},
        "staff": {"shared-vision": (2.72, 2.80), "collaborative-culture": (2.85, 2.92),
                  "student-centered-instruction": (2.88, 2.98), "competency-assessment": (3.15, 3.25),
                  "flexible-environments": (2.75, 2.85), "learner-supports": (2.90, 2.97),
                  "professional-learning": (2.95, 3.05), "leadership-support": (2.78, 2.86),
                  "family-partnerships": (2.35, 2.42)},
    },
    "YUHSD": {  # partnerships and learner supports strong; schedule and GPA worries; uneven agency
        "students": {"student-agency": (2.26, 2.30), "supportive-relationships": (2.74, 2.78),
                     "equitable-environments": (2.64, 2.67), "learning-pathways": (2.50, 2.48),
                     "assessment-feedback": (2.48, 2.52)},
        "staff": {"shared-vision": (2.78, 2.86), "collaborative-culture": (2.88, 2.95),
                  "student-centered-instruction": (2.75, 2.85), "competency-assessment": (2.55, 2.62),
                  "flexible-environments": (2.60, 2.66), "learner-supports": (3.10, 3.20),
                  "professional-learning": (2.85, 2.93), "leadership-support": (2.82, 2.90),
                  "family-partnerships": (3.02, 3.12)},
    },
}
UNEVEN = {("YUHSD", "student-agency"): 0.65}  # a wider spread of respondents' leanings
STUDENT_LABEL_ITEMS = {"sa2", "sr1", "sr3", "af2"}  # items the student export writes as response labels


def calibrated(target: float, latent: np.ndarray) -> np.ndarray:
    """Round ``shift + latent`` onto 1-4, with ``shift`` set so the mean of item means is ``target``."""
    shift = target
    for _ in range(40):
        answers = np.clip(np.rint(shift + latent), 1, 4)
        gap = target - answers.mean()
        if abs(gap) < 0.0005:
            break
        shift += gap
    return answers


def make_wave(spec, district: str, population: str, wave: int) -> str:
    info = DISTRICTS[district]
    pop = spec.population(population)
    d_index = list(DISTRICTS).index(district)
    rng = np.random.default_rng([SEED, d_index, [p.id for p in spec.populations].index(population), wave])
    n = info[population][wave]
    students = population == "students"
    general = rng.normal(0, 0.35, n)
    columns: dict[str, list[str]] = {}
    for construct in pop.constructs:
        k = len(construct.items)
        spread = UNEVEN.get((district, construct.id), 0.4)
        leaning = rng.normal(0, spread, n)
        item_rng = np.random.default_rng([SEED, sum(map(ord, construct.key))])  # item offsets fixed across files
        offsets = item_rng.uniform(-0.2, 0.2, k)
        offsets -= offsets.mean()
        noise = rng.normal(0, 0.6 if students else 0.5, (n, k))
        latent = general[:, None] + leaning[:, None] + offsets[None, :] + noise
        answers = calibrated(TARGETS[district][population][construct.id][WAVES.index(wave)], latent)
        skipped = rng.random(n) < 0.02  # a few respondents skip the whole construct
        for index, item in enumerate(construct.items):
            scale = spec.scales[item.scale]
            values = answers[:, index].astype(int)
            if item.reverse:
                values = scale.minimum + scale.maximum - values
            rate = rng.uniform(0.0, 0.15) if students else rng.uniform(0.0, 0.1)
            missing = skipped | (rng.random(n) < rate)
            as_label = item.id in STUDENT_LABEL_ITEMS if students else (wave == 2022 or item.scale != "agreement")
            labels = {v: label for label, v in scale.responses.items()}
            columns[item.id] = ["" if m else (labels[v] if as_label else str(v)) for v, m in zip(values, missing, strict=True)]
    schools = list(info["schools"])
    school = rng.choice(schools, size=n, p=list(info["schools"].values()))
    prefix = f"{'S' if students else 'T'}{str(wave)[2:]}"
    header = [spec.id_column, "school", *(["grade_band"] if students else []), *(item.id for item in pop.items)]
    bands = rng.choice(list(info["grade_bands"]), size=n, p=list(info["grade_bands"].values())) if students else None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    order = rng.permutation(n)  # ids are not in school order
    for row in range(n):
        record = [f"{prefix}-{order[row] + 1:04d}", school[row]]
        if students:
            record.append(bands[row])
        record += [columns[item.id][row] for item in pop.items]
        writer.writerow(record)
    return buffer.getvalue()


def main() -> None:
    spec, problems = read_survey_spec(ROOT)
    if spec is None or [p for p in problems if p.severity == "error"]:
        raise SystemExit("survey.yaml has problems: " + "; ".join(map(str, problems)))
    for district in DISTRICTS:
        for population in ("students", "staff"):
            for wave in WAVES:
                path = ROOT / "surveys" / district / f"{population}-{wave}.csv"
                atomic_write_text(path, make_wave(spec, district, population, wave))
                print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
