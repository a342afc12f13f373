"""AppTest of the language-model pages on the built-in moe-lm (a character LM): a task battery attached and
edited on the Model page, a run on its tasks (units x tasks modes), the Editor's per-task scores and greedy
continuation, the user's own text as an objective ("position:token" labels), and links that reopen them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from .test_pages import _app, _launch_and_wait, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures
from .test_urls import _by_label, _open, _params  # noqa: E402

BATTERY = "moe-lm-languages.yaml"
LANGUAGES = ["english", "german", "french", "spanish", "italian"]


def _click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    _no_errors(at, label)
    return at


def _attached(msa_home) -> AppTest:
    at = _open("pages/model.py", {"model": "moe-lm"})
    at.selectbox(key="battery_pick").set_value(BATTERY).run()
    return _click(at, "Attach the shipped battery")


def test_battery_table_edit_run_modes_editor_and_link(msa_home):
    at = _attached(msa_home)
    assert at.session_state["msa_tasks"].endswith(BATTERY)
    table = at.data_editor[0]
    rows = table.value
    assert list(rows.columns) == ["task", "score", "prompt", "answer"] and len(rows) == 40
    assert list(dict.fromkeys(rows["task"])) == LANGUAGES and rows["answer"].iloc[0] == "andirons"

    # a bad edit (an answer outside the model's characters): one message, the battery stays as it was
    at.session_state[table.key] = {"edited_rows": {0: {"answer": "Andirons!"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    next(b for b in at.button if b.label == "Apply the edits").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "not in the model's vocabulary" in at.error[0].value
    assert at.session_state["msa_tasks"].endswith(BATTERY)
    # a good edit: english gets a new word; the battery is a new content-addressed upload
    at.session_state[table.key] = {"edited_rows": {0: {"answer": "house"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    _click(at, "Apply the edits")
    edited = at.session_state["msa_tasks"]
    assert "/uploads/" in edited and edited.endswith("battery.yaml")
    assert at.data_editor[0].value["answer"].iloc[0] == "house"

    # the link reopens the same battery in a fresh session
    params = _params(at)
    assert params["tasks"] == edited
    again = _open("pages/model.py", params)
    assert again.session_state["msa_tasks"] == edited
    assert again.data_editor[0].value.equals(at.data_editor[0].value)

    # a run on the tasks objective: modes are units x tasks
    at.switch_page("pages/run.py").run()
    _no_errors(at, "run page")
    assert _by_label(at.selectbox, "Objective").value == "tasks"
    _launch_and_wait(at, 40)
    at.switch_page("pages/modes.py").run()
    _no_errors(at, "modes")
    bars = _by_label(at.selectbox, "Bars show")
    assert bars.options == ["total over outputs"] + [f"task {name}" for name in LANGUAGES]

    # the Editor: per-task scores intact vs edited, and the continuation both ways
    at.switch_page("pages/editor.py").run()
    _no_errors(at, "editor")
    scores = next(d for d in at.dataframe if "task" in d.value.columns).value
    assert list(scores["task"]) == LANGUAGES and (scores["intact"] == scores["edited"]).all()
    prompt = _by_label(at.text_input, "Prompt to continue (8 greedy tokens)").value
    assert len(at.code) == 2 and prompt and at.code[0].value.startswith(prompt)
    intact_text = at.code[0].value
    assert len(intact_text) > len(prompt)
    assert at.code[1].value == intact_text  # nothing lesioned yet
    _click(at, "Lesion top-5")
    scores = next(d for d in at.dataframe if "task" in d.value.columns).value
    assert (scores["edited"] < scores["intact"]).all()  # the top units help every language
    assert at.code[0].value == intact_text
    assert at.code[1].value != intact_text


def test_own_text_gives_position_token_labels_and_a_link(msa_home):
    at = _open("pages/model.py", {"model": "moe-lm"})
    at.text_area(key="model_text_input").input("hello").run()
    _click(at, "Score this text")
    assert _params(at)["text"] == "hello"
    again = _open("pages/model.py", _params(at))
    assert again.text_area(key="model_text_input").value == "hello"
    at.switch_page("pages/run.py").run()
    objective = _by_label(at.selectbox, "Objective")
    assert "text:hello" in objective.options
    objective.set_value("text:hello").run()
    _launch_and_wait(at, 40)
    at.switch_page("pages/modes.py").run()
    _no_errors(at, "modes")
    labels = ["1:h", "2:e", "3:l", "4:l", "5:o", "6:<eos>"]  # the two l's kept apart by their positions
    assert _by_label(at.selectbox, "Bars show").options == ["total over outputs"] + [f"position:token {x}" for x in labels]


def test_a_link_to_a_file_outside_the_uploads_is_refused(msa_home, tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text("tasks: []\n")
    at = _app("moe-lm")
    at.query_params["tasks"] = str(outside)
    at.run()
    assert not at.exception
    assert any("not an uploaded or shipped battery" in e.value for e in at.error)


def test_hugging_face_model_battery_text_and_continuation(msa_home, tmp_path):
    """A tiny GPT-2 saved with its tokenizer: the paper-shaped battery attaches, a text gets "position:token"
    labels on the Model page, and the Editor continues a prompt intact and lesioned."""
    pytest.importorskip("transformers")
    from ..lm_fixtures import save_model

    folder = tmp_path / "gpt2"
    save_model(folder, "gpt2")
    at = _open("pages/model.py", {"model": str(folder)})
    at.selectbox(key="battery_pick").set_value("paper-battery.yaml").run()
    _click(at, "Attach the shipped battery")
    tasks = list(dict.fromkeys(at.data_editor[0].value["task"]))
    assert len(tasks) == 9 and "capitals" in tasks
    at.text_area(key="model_text_input").input("The cat sat.").run()
    _click(at, "Score this text")
    from ui import resources

    labels = resources.subject(str(folder), None, at.session_state["msa_tasks"]).objective_labels("text:The cat sat.")
    assert labels and [label.split(":", 1)[0] for label in labels] == [str(i + 1) for i in range(len(labels))]
    assert any(f"{len(labels)} tokens scored" in c.value for c in at.caption)
    at.switch_page("pages/editor.py").run()
    _no_errors(at, "editor")
    scores = next(d for d in at.dataframe if "task" in d.value.columns).value
    assert list(scores["task"]) == tasks
    assert len(at.code) == 2 and at.code[0].value == at.code[1].value  # nothing lesioned: the same both ways
    assert at.code[0].value.startswith("The cat sat.")
    lesioned = _open("pages/editor.py", {**_params(at), "lesioned": "0,1,2,3"})
    scores = next(d for d in lesioned.dataframe if "task" in d.value.columns).value
    assert (scores["edited"] != scores["intact"]).any()
    assert len(lesioned.code) == 2 and lesioned.code[0].value == at.code[0].value


def test_run_output_names_keep_text_labels_and_name_tasks():
    from msa_core.lm_views import run_output_names

    assert run_output_names(["1:h", "2:e", "3:l", "4:l"], 4, "tokens", "text:hell") == (
        ["1:h", "2:e", "3:l", "4:l"], "position:token")
    assert run_output_names(["h", "e", "l", "l"], 4, "tokens", "token log-prob:hell")[0] == ["0:h", "1:e", "2:l", "3:l"]
    assert run_output_names(["english", "german"], 2, "tasks", "tasks") == (["english", "german"], "task")


def test_battery_file_stays_inside_the_uploads_and_shipped_folders(msa_home, tmp_path):
    from ui import resources

    inside = resources.save_upload("b.yaml", b"tasks: []\n")
    assert resources.battery_file(inside) == str(Path(inside).resolve())
    sneaky = str(resources.uploads_dir() / ".." / "elsewhere.yaml")
    (resources.uploads_dir().parent / "elsewhere.yaml").write_text("tasks: []\n")
    with pytest.raises(ValueError, match="not an uploaded or shipped battery"):
        resources.battery_file(sneaky)
