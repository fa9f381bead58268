"""import-prompts: an official script's prompt constants -> our template, exactly, unexecuted."""

from __future__ import annotations

import tomllib

import pytest

from spatialreward.cli import main
from spatialreward.errors import ConfigError
from spatialreward.vlm.importer import import_prompts, string_constants
from spatialreward.vlm.prompts import load_prompts

# An "official" script of our own invention, in the shapes such scripts have: constants
# filled with str.format (doubled braces), one sent raw, one built from two, code that
# must never run, and an f-string that is not a literal.
SCRIPT = '''\
import os
open({canary!r}, "w").write("ran")  # importing this file would create the canary
HEAD = "Judge the edit.\\n"
SC_TEMPLATE = HEAD + """Instruction: {{instruction}}
Answer {{{{"score": [a, b]}}}} and mark regions <|bbox_{{{{id}}}}|>.
"""
MULTI = """{{num_images}} inputs. Task: {{instruction}}
"""
PQ_TEXT = """Rate quality. Reply {{{{"score": [n, a]}}}}
"""
RULE_A = "Rule one: <instruction>."
RULE_B = "Rule two."
DYNAMIC = f"{{os.getcwd()}}"
'''


@pytest.fixture()
def script(tmp_path):
    path = tmp_path / "eval" / "dataset.py"
    path.parent.mkdir()
    canary = tmp_path / "canary"
    path.write_text(SCRIPT.format(canary=str(canary)))
    return path, canary


def test_constants_are_read_by_parsing_and_the_file_never_runs(script):
    path, canary = script
    found = string_constants(path)
    assert not canary.exists()
    assert found["SC_TEMPLATE"].startswith("Judge the edit.\nInstruction: {instruction}\n")
    assert "DYNAMIC" not in found  # an f-string is not a literal


def test_the_template_reproduces_the_scripts_text_exactly(script, tmp_path, capsys):
    path, canary = script
    out = tmp_path / "official.toml"
    assert main([ "import-prompts", str(path), "--sc", "SC_TEMPLATE", "--pq", "PQ_TEXT",
                  "--out", str(out)]) == 0
    assert not canary.exists()
    p = load_prompts(out)
    # SC as str.format(instruction=...) sends it: doubled braces single, trailing newline kept
    assert p.sc.text("make it red") == ('Judge the edit.\nInstruction: make it red\n'
                                        'Answer {"score": [a, b]} and mark regions '
                                        '<|bbox_{id}|>.\n')
    # PQ is sent raw: its doubled braces reach the model doubled
    assert p.pq is not None and p.pq.prompt == 'Rate quality. Reply {{"score": [n, a]}}\n'
    assert p.sc.images == ("source", "edited") and p.regions
    assert p.wording_sha256 in capsys.readouterr().out
    assert tomllib.loads(out.read_text())["generation"]["temperature"] == 0.0


def test_fields_markers_joins_and_clear_refusals(script):
    path, _ = script
    text = import_prompts(path, sc="MULTI", fields={"num_images": "2"})
    assert tomllib.loads(text)["sc"]["prompt"] == "2 inputs. Task: {instruction}\n"
    with pytest.raises(ConfigError, match="num_images"):
        import_prompts(path, sc="MULTI")
    # as the multi-image SC call, the count field becomes ours, filled per edit
    multi = tomllib.loads(import_prompts(path, sc="SC_TEMPLATE", sc_multi="MULTI",
                                         sources_field="num_images"))
    assert multi["sc_multi"] == {"images": ["sources", "edited"],
                                 "prompt": "{num_sources} inputs. Task: {instruction}\n"}
    joined = import_prompts(path, sc="RULE_A,RULE_B", sc_fill="replace",
                            marker="<instruction>", like="editscore")
    data = tomllib.loads(joined)
    assert data["sc"]["prompt"] == "Rule one: {instruction}.\nRule two."
    assert data["edit_size"] == "source" and data["regions"] is False  # editscore's settings
    with pytest.raises(ConfigError, match="no module-level string constant 'NOPE'"):
        import_prompts(path, sc="NOPE")
    bad = path.with_name("broken.py")
    bad.write_text("X = (\n")
    with pytest.raises(ConfigError, match="not valid Python"):
        import_prompts(bad, sc="X")
