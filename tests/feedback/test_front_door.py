"""Through the front door: answers from a running gateway, feedback with POST /v1/feedback,
`luodi feedback export`, and the exported datasets train with `luodi train sft|dpo`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from luodi.data.datasets import load_records, resolve
from tests.helpers import run_cli
from tests.serve.conftest import fake_route, gateway

SYSTEM = "你是星河精密的客服助手。"
QUESTION = "S200 传感器保修多久？"
FIX = "S200 传感器保修两年，售后电话 13812345678。"


@pytest.mark.slow
def test_gateway_feedback_to_training(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dep = {"name": "helpdesk", "routes": [fake_route("bot")], "system_prompt": SYSTEM}
    with gateway(home, [dep]) as gw:
        client, http = gw.client(), gw.http()
        ask = [{"role": "user", "content": QUESTION}]
        first = client.chat.completions.create(model="helpdesk", messages=ask)
        second = client.chat.completions.create(model="helpdesk", messages=ask)
        other = client.chat.completions.create(
            model="helpdesk", messages=[{"role": "user", "content": "say:请稍候。"}]
        )
        for body in (
            {"request_id": first.id, "rating": "👎", "correction": FIX},
            {"request_id": second.id, "rating": "4", "scale": "1-5"},
            {"request_id": other.id, "rating": 1, "scale": "1-5"},
        ):
            assert http.post("/v1/feedback", json=body).status_code == 200
        gw.recorder.flush()
        answer = first.choices[0].message.content
        assert answer == f"bot: {QUESTION}"  # the scripted backend echoes

        sft = json.loads(
            run_cli(
                "feedback", "export", "--to", "sft", "--name", "fb-sft", "--json", home=home
            ).stdout
        )
        dpo = json.loads(
            run_cli(
                "feedback", "export", "--to", "dpo", "--name", "fb-dpo", "--json", home=home
            ).stdout
        )
        [rec] = load_records(resolve(gw.store, sft["dataset"]))
        # the gateway masked the correction when it stored it; the system prompt is not kept
        assert rec["messages"] == [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "S200 传感器保修两年，售后电话 [PHONE]。"},
        ]
        pairs = load_records(resolve(gw.store, dpo["dataset"]))
        got = sorted((p["chosen"], p["rejected"], p["rejected_rating"]) for p in pairs)
        # the correction beats both answers (the second is rated 4/5 = 0.75, not below 0.5,
        # so it only loses to the correction of the identical first answer: one pair)
        assert got == [("S200 传感器保修两年，售后电话 [PHONE]。", answer, 0.0)]
        assert dpo["skipped"] == {"not_below_chosen": 1, "single_response": 1}

    # both datasets are trainable as they are: two steps on a tiny model each
    common = ["--base", "tiny:test", "--max-steps", "2", "--batch-size", "1"]
    common += ["--set", "val_ratio=0", "--json"]
    m1 = json.loads(run_cli("train", "sft", "--dataset", "fb-sft", "--name", "s", *common,
                            home=home).stdout)  # fmt: skip
    m2 = json.loads(run_cli("train", "dpo", "--dataset", "fb-dpo", "--name", "d", *common,
                            "--method", "lora", home=home).stdout)  # fmt: skip
    assert (m1["model"], m2["model"]) == ("s:v1", "d:v1")
