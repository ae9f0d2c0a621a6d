"""The README's integration examples, run as written: every block after a
'README example, run by tests/integrations/test_readme_examples.py' marker, in a folder that holds
what they name (a transformers Mamba folder, the demo's checkpoint)."""

import re
import shlex
from pathlib import Path

import torch
import transformers

from longssm.cli.main import main
from longssm.data import ByteTokenizer
from longssm.models import LanguageModel, get_preset
from longssm.models.checkpoint import save_model_only

README = Path(__file__).parents[2] / "README.md"
MARK = "<!-- README example, run by tests/integrations/test_readme_examples.py -->"


def blocks():
    text = README.read_text()
    return [re.match(r"\n```(\w+)\n(.*?)```", text[i + len(MARK):], re.S).groups()
            for i in [m.start() for m in re.finditer(re.escape(MARK), text)]]


def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    transformers.MambaForCausalLM(transformers.MambaConfig(vocab_size=256, hidden_size=16, num_hidden_layers=2)) \
        .save_pretrained("mamba-130m-hf")
    save_model_only("runs/demo", LanguageModel(get_preset("tiny-hybrid", vocab_size=256)),
                    {"model_config": get_preset("tiny-hybrid", vocab_size=256).to_dict(),
                     "tokenizer": ByteTokenizer().to_json()})
    (tmp_path / "my_tasks").mkdir()
    (tmp_path / "my_tasks" / "data.jsonl").write_text('{"text": "a few words", "more": " of text"}\n' * 3)
    (tmp_path / "my_tasks" / "my_task.yaml").write_text(
        "task: my_task\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'my_tasks' / 'data.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{text}}'\ndoc_to_choice: ['{{more}}', ' else']\ndoc_to_target: 0\n"
        "metric_list:\n  - metric: acc\n")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    found = blocks()
    assert [lang for lang, _ in found] == ["bash", "python", "python"]
    for line in found[0][1].splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "longssm"
        assert main(argv[1:]) == 0, line
    exec(compile(found[1][1], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Do you wish to run the custom code" not in out  # nothing waits for a keypress
    assert out.strip().splitlines()[-1].startswith("The state")
    exec(compile(found[2][1], "README.md", "exec"), {})
    assert "'acc,none'" in capsys.readouterr().out
