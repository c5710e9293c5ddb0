#!/usr/bin/env python3
"""Checks that transformers reads a reward model posttrain saved and gives the same rewards.

  python tests/reward/hf_rewards.py MODEL_DIR SCORED.jsonl

SCORED.jsonl is `posttrain reward score` output of prompt + completion rows (chat, the model's
tokenizer). Each row is rendered with the saved tokenizer's chat template (apply_chat_template),
scored by AutoModelForSequenceClassification in float32, and compared with the row's "reward"
(1e-4). Exits non-zero on a mismatch.
"""
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    model_dir, scored = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir,
                                                               dtype=torch.float32).eval()
    worst, n = 0.0, 0
    rows = [json.loads(l) for l in open(scored)]
    ids = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]},
                                    {"role": "assistant", "content": r["completion"]}],
                                   tokenize=True) for r in rows]
    ids = [list(i["input_ids"]) if hasattr(i, "keys") else list(i) for i in ids]
    T = max(len(i) for i in ids)
    pad = model.config.pad_token_id
    batch = torch.tensor([i + [pad] * (T - len(i)) for i in ids])
    with torch.no_grad():
        got = model(input_ids=batch).logits[:, 0].tolist()
    for r, g in zip(rows, got):
        worst = max(worst, abs(r["reward"] - g))
        n += 1
    print(f"{n} rows, max |posttrain - transformers| = {worst:.2e}")
    sys.exit(0 if n and worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
