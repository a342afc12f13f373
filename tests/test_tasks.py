"""Task batteries: file format and errors, per-task scores against a plain per-item computation, batch-size
invariance, the user's own text, greedy continuations, and the shipped batteries (moe-lm and the paper's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from msa_core import shapley_modes  # noqa: E402
from msa_core.models import ModelLoadError, load_subject  # noqa: E402
from msa_core.models.lm_objectives import PerGroupScore  # noqa: E402
from msa_core.tasks import (  # noqa: E402
    BatteryError,
    HFCodec,
    encode_battery,
    greedy_continuation,
    load_battery,
    subject_codec,
)
from tests.lm_fixtures import save_model  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "tasks"
BATTERY = """
tasks:
  - name: addition
    score: accuracy
    items:
      - {prompt: "2 + 3 =", answer: " 5"}
      - {prompt: "7 + 1 =", answer: " 8"}
  - name: capitals
    score: logprob
    items:
      - {prompt: "Paris is the capital of", answer: " France"}
      - {prompt: "Rome", answer: " is the capital of Italy"}
      - {prompt: "The quick brown fox jumps over the lazy", answer: " dog."}
"""


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("gpt2tok"), "gpt2")


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_subject(str(gpt2_dir), tasks=BATTERY)


def test_battery_round_trips_and_hashes_content(tmp_path):
    battery = load_battery(BATTERY)
    assert battery.names == ["addition", "capitals"] and battery.n_items == 5
    assert battery.tasks[1].items[1].answer == " is the capital of Italy"
    for suffix, text in ((".yaml", battery.to_yaml()), (".json", battery.to_json())):
        path = tmp_path / f"b{suffix}"
        path.write_text(text, encoding="utf-8")
        again = load_battery(str(path))
        assert again == battery and again.sha256() == battery.sha256() and again.source == str(path)
    changed = load_battery(BATTERY.replace('" 8"', '" 9"'))
    assert changed.sha256() != battery.sha256()


@pytest.mark.parametrize("text, message", [
    ("tasks: []", "'tasks' must be a non-empty list"),
    ("[1, 2", "not valid YAML/JSON"),
    ("tasks:\n  - {score: accuracy, items: [{prompt: a, answer: b}]}", "task 1 needs a non-empty string 'name'"),
    ("tasks:\n  - {name: t, score: bleu, items: [{prompt: a, answer: b}]}", "task 't' has score 'bleu'"),
    ("tasks:\n  - {name: t, items: []}", "task 't' needs a non-empty list 'items'"),
    ("tasks:\n  - {name: t, items: [{prompt: a, answer: b}, {prompt: a}]}", "task 't', item 2 has no 'answer'"),
    ("tasks:\n  - {name: t, items: [{prompt: a, answer: 5}]}", "task 't', item 1: 'answer' must be a string"),
    ("tasks:\n  - {name: t, items: [{prompt: a, answer: ''}]}", "task 't', item 1 has an empty answer"),
    ("tasks:\n  - {name: t, items: [{prompt: a, answer: b, hint: c}]}", "unknown key(s) 'hint'"),
    ("tasks:\n  - {name: t, items: [{prompt: a, answer: b}]}\n  - {name: t, items: [{prompt: a, answer: b}]}",
     "task 2 repeats the name 't'"),
])
def test_malformed_batteries_give_one_line_errors(text, message):
    with pytest.raises(BatteryError) as error:
        load_battery(text)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert isinstance(error.value, ModelLoadError)


def test_missing_file_answer_without_tokens_and_model_without_tokenizer(tmp_path):
    with pytest.raises(BatteryError, match="does not exist"):
        load_battery(str(tmp_path / "none.yaml"))

    class NoAnswerTokens:
        pad_id = 0

        def encode_prompt(self, text):
            return [1, 2]

        def encode_answer(self, text):
            return []

    with pytest.raises(BatteryError, match=r"task 'addition', item 1: the answer ' 5' tokenises to nothing"):
        encode_battery(load_battery(BATTERY), NoAnswerTokens())
    bare = save_model(tmp_path / "bare", "gpt2", tokenizer=False)
    with pytest.raises(BatteryError, match="has no tokenizer"):
        load_subject(str(bare), tasks=BATTERY)


def _per_item_reference(subject, battery):
    """Each item alone (no padding, no batch): accuracy = the argmax chain equals the answer, logprob = mean."""
    codec = HFCodec(subject.tokenizer)
    scores = []
    for task in battery.tasks:
        values = []
        for item in task.items:
            prompt, answer = codec.encode_prompt(item.prompt), codec.encode_answer(item.answer)
            ids = torch.tensor([prompt + answer])
            with torch.no_grad():
                logits = subject.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double()
            target = torch.tensor(answer)
            if task.score == "accuracy":
                values.append(float((logits.argmax(-1) == target).all()))
            else:
                values.append(float(logits.log_softmax(-1)[torch.arange(len(answer)), target].mean()))
        scores.append(np.mean(values))
    return torch.tensor(scores, dtype=torch.float64)


def test_task_scores_match_items_scored_one_by_one(gpt2):
    assert gpt2.default_objective == "tasks" and gpt2.objective_labels() == ["addition", "capitals"]
    assert gpt2.objective_kind() == "tasks"
    objective = gpt2.objective()
    assert objective.encoded.attention_mask.sum(1).unique().numel() > 1  # padded to different lengths
    game = gpt2.game(units="transformer.h.1.attn.heads")
    assert game.output_shape == (2,)
    intact = game(torch.ones((1, game.n_players), dtype=torch.bool))[0]
    assert torch.allclose(intact, _per_item_reference(gpt2, gpt2.battery), atol=1e-5)


def test_accuracy_is_one_exactly_when_the_greedy_continuation_is_the_answer(gpt2):
    codec = HFCodec(gpt2.tokenizer)
    prompts = ["2 + 3 =", "Paris is", "The quick brown"]
    items, wrong = [], []
    for prompt in prompts:
        greedy = greedy_continuation(gpt2, prompt, n_tokens=2).intact_ids
        other = [greedy[0], (greedy[1] + 1) % len(gpt2.tokenizer)]
        for tokens, into in ((greedy, items), (other, wrong)):
            answer = codec.decode(tokens)
            if codec.encode_answer(answer) == tokens:  # the decoded text tokenises back to the same tokens
                into.append({"prompt": prompt, "answer": answer})
    assert items and wrong
    battery = {"tasks": [{"name": "greedy", "score": "accuracy", "items": items},
                         {"name": "not greedy", "score": "accuracy", "items": wrong}]}
    subject = load_subject(gpt2.ref, tasks=battery)
    game = subject.game(units="transformer.h.2.mlp.act")
    values = game(torch.ones((1, game.n_players), dtype=torch.bool))[0]
    assert values.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_battery_games_do_not_depend_on_the_batch_size(gpt2, prefix_reuse):
    units = gpt2.unit_presets["all heads"]
    coalitions = torch.rand((7, 12), generator=torch.Generator().manual_seed(3)) > 0.5
    values = [gpt2.game(units=units, batch_size=b, prefix_reuse=prefix_reuse)(coalitions) for b in (1, 2, 3)]
    for other in values[1:]:
        assert torch.allclose(values[0], other, atol=1e-6)


def test_modes_are_units_by_tasks(gpt2):
    game = gpt2.game(units="transformer.h.2.attn.heads")
    result = shapley_modes(game, game.n_players, method="exact")
    assert tuple(result.values.shape) == (4, 2)
    full, empty = game(torch.tensor([[True] * 4, [False] * 4]))
    assert torch.allclose(result.values.sum(0), full - empty, atol=1e-9)


def test_the_users_text_scores_each_token_labelled_by_position(gpt2):
    text = "the cat the cat"
    objective = gpt2.objective("text:" + text)
    ids = gpt2.tokenizer(text)["input_ids"]
    labels = objective.output_labels
    assert len(labels) == len(ids) - 1 and len(set(labels)) == len(labels)  # repeated tokens kept apart
    assert labels[0] == f"1:{gpt2.tokenizer.decode([ids[1]])}"
    game = gpt2.game(units="transformer.h.2.attn.heads", objective="text:" + text)
    values = game(torch.ones((1, 4), dtype=torch.bool))[0]
    with torch.no_grad():
        logits = gpt2.model(input_ids=torch.tensor([ids])).logits[0].double()
    expected = logits[:-1].log_softmax(-1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert values.shape == (len(ids) - 1,) and torch.allclose(values, expected, atol=1e-5)
    with pytest.raises(ModelLoadError, match="text"):
        gpt2.objective("text")


def _manual_greedy(model, ids, n_tokens, module=None, zero=None):
    """Greedy tokens, with a forward hook zeroing ``zero`` (indices) of ``module``'s output when given."""
    handle = None if module is None else module.register_forward_hook(
        lambda m, args, out: out.index_fill(-1, torch.tensor(zero), 0.0))
    tokens, first = list(ids), None
    try:
        with torch.no_grad():
            for _ in range(n_tokens):
                logits = model(input_ids=torch.tensor([tokens])).logits[0, -1]
                first = logits if first is None else first
                tokens.append(int(logits.argmax()))
    finally:
        if handle is not None:
            handle.remove()
    return tokens[len(ids):], first


def test_greedy_continuation_intact_and_lesioned(gpt2):
    units = "transformer.h.2.mlp.act"
    prompt = "Paris is the capital of"
    ids = gpt2.tokenizer(prompt)["input_ids"]
    intact, intact_logits = _manual_greedy(gpt2.model, ids, 4)
    none = greedy_continuation(gpt2, prompt, units=units, n_tokens=4)
    assert none.intact_ids == intact == none.lesioned_ids
    assert none.intact == gpt2.tokenizer.decode(intact)
    zero = list(range(0, 128, 2))
    module = gpt2.model.get_submodule(units)
    expected, lesioned_logits = _manual_greedy(gpt2.model, ids, 4, module, zero)
    assert not torch.allclose(lesioned_logits, intact_logits)  # the lesion changes the model
    both = greedy_continuation(gpt2, prompt, zero, units=units, n_tokens=4)
    assert both.intact_ids == intact and both.lesioned_ids == expected and both.lesioned_units == tuple(zero)
    game = gpt2.game(units=units)  # the Editor's game (prefix reuse): same players, same continuation
    assert game.path.startswith("prefix")
    assert greedy_continuation(gpt2, prompt, zero, game=game, n_tokens=4).lesioned_ids == expected
    with pytest.raises(IndexError):
        greedy_continuation(gpt2, prompt, [128], units=units)


def test_moe_lm_battery_is_the_builtin_language_game():
    subject = load_subject("moe-lm", tasks=str(ASSETS / "moe-lm-languages.yaml"))
    battery = subject.battery
    assert battery.names == ["english", "german", "french", "spanish", "italian"]
    game = subject.game()
    words = [item.answer for task in battery.tasks for item in task.items]
    groups = torch.tensor([t for t, task in enumerate(battery.tasks) for _ in task.items])
    from msa_core.zoo.lm import encode_words

    tokens, lengths = encode_words(words, subject_codec(subject).vocab)
    builtin = PerGroupScore(tokens, lengths, groups, battery.names)
    builtin.inputs = tokens  # the game runs on these words, not on the subject's 160
    coalitions = torch.rand((6, game.n_players), generator=torch.Generator().manual_seed(0)) > 0.4
    assert torch.allclose(game(coalitions), subject.game(objective=builtin)(coalitions), atol=1e-12)
    continued = greedy_continuation(subject, "hau", [0, 1, 2], n_tokens=11)  # 1 + 3 + 11 = max_len 14
    for ids, text in ((continued.intact_ids, continued.intact), (continued.lesioned_ids, continued.lesioned)):
        assert 0 < len(ids) <= 11 and 2 not in ids[:-1]  # stops at the first EOS (id 2)
        assert text == "".join(subject_codec(subject).token_strings(ids))


def test_paper_battery_encodes_with_a_byte_level_tokenizer(gpt2):
    battery = load_battery(str(ASSETS / "paper-battery.yaml"))
    assert battery.names == ["addition", "subtraction", "multiplication", "english", "german", "french",
                             "spanish", "italian", "capitals"]
    assert all(len(task.items) >= 5 for task in battery.tasks)
    subject = load_subject(gpt2.ref, tasks=battery)
    values = subject.game(units="transformer.h.2.attn.heads")(torch.ones((1, 4), dtype=torch.bool))
    assert values.shape == (1, 9) and torch.isfinite(values).all()


def test_a_battery_run_end_to_end_through_execute_and_the_cli(gpt2_dir, tmp_path, monkeypatch, capsys):
    from msa_core.cli import main
    from msa_core.runs import RunSpec, RunStore, execute

    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    path = tmp_path / "battery.yaml"
    path.write_text(BATTERY, encoding="utf-8")
    spec = RunSpec(model=str(gpt2_dir), tasks=str(path), units=("transformer.h.2.attn.heads",), method="exact")
    store = RunStore(tmp_path / "store")
    record = execute(spec, store)
    assert tuple(record.result.values.shape) == (4, 2)
    assert record.result.metadata["output_labels"] == ["addition", "capitals"]
    subject = load_subject(str(gpt2_dir), tasks=str(path))
    game = subject.game(units="transformer.h.2.attn.heads")
    full, empty = game(torch.tensor([[True] * 4, [False] * 4]))
    assert torch.allclose(record.result.values.sum(0).double(), full - empty, atol=1e-6)
    path.write_text(BATTERY.replace('" 8"', '" 9"'), encoding="utf-8")  # new content, new run key
    assert execute(spec, store).id != record.id
    path.write_text("tasks: []", encoding="utf-8")
    assert main(["run", str(gpt2_dir), "--tasks", str(path), "--layer", "transformer.h.2.attn.heads"]) == 2
    assert "'tasks' must be a non-empty list" in capsys.readouterr().err


def test_a_model_that_is_not_a_language_model_refuses_a_battery():
    with pytest.raises(BatteryError, match="need a language model"):
        load_subject("mlp-digits", tasks=BATTERY)


def test_task_scores_intact_and_lesioned_for_the_editor(gpt2):
    from msa_core.tasks import task_scores

    game = gpt2.game(units="transformer.h.2.attn.heads")
    scores = task_scores(gpt2, [0, 2], game=game)
    expected = game(torch.tensor([[True] * 4, [False, True, False, True]]))
    assert scores["task"] == ["addition", "capitals"]
    assert scores["intact"] == expected[0].tolist() and scores["lesioned"] == expected[1].tolist()
    assert task_scores(gpt2, [], units="transformer.h.2.attn.heads")["lesioned"] == pytest.approx(scores["intact"], abs=1e-6)


def test_battery_table_rows_round_trip_and_name_the_bad_row():
    from msa_core.tasks import battery_from_rows

    battery = load_battery(BATTERY)
    rows = battery.to_rows()
    assert len(rows) == 5 and rows[2] == {"task": "capitals", "score": "logprob", "prompt": "Paris is the capital of",
                                          "answer": " France"}
    assert battery_from_rows(rows + [{"task": None, "score": "", "prompt": "", "answer": ""}]) == battery
    rows[3]["score"] = "accuracy"
    with pytest.raises(BatteryError, match="row 4 gives task 'capitals' the score 'accuracy'"):
        battery_from_rows(rows)
    with pytest.raises(BatteryError, match="task battery table: task 'x', item 1 has an empty answer"):
        battery_from_rows([{"task": "x", "score": "", "prompt": "p", "answer": ""}])
