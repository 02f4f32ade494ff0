from casestudy.codebook import load_codebook

GOOD = """\
name: Test
groups:
  conditions: Conditions
codes:
  - id: agency
    label: Agency
    group: conditions
    definition: Students own their learning.
  - id: voice
    label: Voice and choice
    parent: agency
    definition: Choices.
    patterns: [choice, {phrase: I get to, roles: [student]}, {regex: "^menus?$"}, {tokens: [{LOWER: pick}]}]
"""


def write(tmp_path, text):
    path = tmp_path / "codebook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def types(problems):
    return [p.type for p in problems]


def test_good_codebook_loads_with_hierarchy(tmp_path):
    codebook, problems = load_codebook(write(tmp_path, GOOD))
    assert problems == []
    assert codebook.children("agency") == ("voice",)
    assert codebook.codes["voice"].group == "conditions"  # inherited from the parent
    assert codebook.condition_of("voice") == "agency"
    kinds = [p.kind for p in codebook.codes["voice"].patterns]
    assert kinds == ["phrase", "phrase", "regex", "tokens"]
    assert codebook.codes["voice"].patterns[1].roles == ("student",)
    assert codebook.codes["voice"].patterns[0].id == "voice/1"


def test_bad_yaml_names_the_line(tmp_path):
    _, problems = load_codebook(write(tmp_path, GOOD + "  - id: [unclosed\n"))
    assert types(problems) == ["bad-yaml"]
    assert problems[0].line in (14, 15)


def test_duplicate_code_id(tmp_path):
    text = GOOD + "  - id: agency\n    label: Again\n    group: conditions\n    definition: x\n"
    _, problems = load_codebook(write(tmp_path, text))
    assert types(problems) == ["duplicate-code"]
    assert problems[0].line == 14 and "line 5" in problems[0].message


def test_unknown_parent(tmp_path):
    _, problems = load_codebook(write(tmp_path, GOOD.replace("parent: agency", "parent: agenzy")))
    assert types(problems) == ["unknown-parent"]
    assert problems[0].line == 11


def test_cycle_in_hierarchy(tmp_path):
    text = GOOD.replace("    group: conditions\n    definition: Students", "    parent: voice\n    definition: Students")
    _, problems = load_codebook(write(tmp_path, text))
    assert "hierarchy-cycle" in types(problems)
    cycle = next(p for p in problems if p.type == "hierarchy-cycle")
    assert "agency" in cycle.message and "voice" in cycle.message


def test_pattern_that_cannot_compile_names_code_and_line(tmp_path):
    text = GOOD.replace('{regex: "^menus?$"}', '{regex: "menu(("}').replace("{LOWER: pick}", "{LOWERR: pick}")
    _, problems = load_codebook(write(tmp_path, text))
    assert types(problems) == ["bad-pattern", "bad-pattern"]
    assert all(p.line == 13 and "'voice'" in p.message for p in problems)


def test_unknown_group_and_missing_definition(tmp_path):
    text = GOOD.replace("group: conditions\n    definition: Students own their learning.", "group: nowhere")
    _, problems = load_codebook(write(tmp_path, text))
    assert sorted(types(problems)) == ["missing-field", "unknown-group"]


def test_yaml_is_loaded_safely(tmp_path):
    text = "!!python/object/apply:os.system ['echo hacked']\n"
    codebook, problems = load_codebook(write(tmp_path, text))
    assert codebook is None and types(problems) == ["bad-yaml"]


def test_sample_codebook_has_the_twelve_conditions(sample_study):
    conditions = [c.id for c in sample_study.codebook.roots("conditions")]
    assert len(conditions) == 12
    for code in sample_study.codebook.roots("conditions"):
        assert code.definition and code.use_when and code.not_when and code.example and code.patterns
    assert sample_study.codebook.children("agency")
    assert {"success", "challenge"} <= set(sample_study.codebook.codes)
