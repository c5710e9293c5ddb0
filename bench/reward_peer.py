#!/usr/bin/env python3
"""The peer of bench_reward: the same reward-model optimizer steps in transformers + PyTorch eager.

LlamaForSequenceClassification (num_labels 1, sdpa attention, float32 on CPU) of a preset shape
with random weights; each step runs one micro-batch of `batch` rankings, each a random prompt of
--prompt tokens and --responses responses of --response tokens, every response its own row
(prompt + response, as TRL's RewardTrainer concatenates chosen and rejected), the reward read at
the last token; the loss is -log sigmoid(r_better - r_worse) summed over every ordered pair and
divided by the pair count, then gradient clipping to 1.0 and a fused AdamW step (betas 0.9/0.95,
weight decay 0.01 on matrices only), as posttrain's trainer does. Prints one JSON line: median
seconds per step over `iters` steps.

  python bench/reward_peer.py --preset tiny --batch 8 --prompt 96 --response 32 --responses 2
"""
import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

PRESETS = {  # core/model/llama_config.cpp's presets
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                 tie_word_embeddings=True, rope_theta=10000.0),
    "smol-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      head_dim=64, tie_word_embeddings=True, rope_theta=100000.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=96)
    ap.add_argument("--response", type=int, default=32)
    ap.add_argument("--responses", type=int, default=2)
    ap.add_argument("--layout", default="separate")  # accepted for the script's symmetry
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = dict(PRESETS[a.preset])
    theta = p.pop("rope_theta")
    cfg = LlamaConfig(**p, rms_norm_eps=1e-5, max_position_embeddings=8192, num_labels=1,
                      pad_token_id=p["vocab_size"] - 1,
                      rope_parameters={"rope_type": "default", "rope_theta": theta},
                      attn_implementation="sdpa")
    model = LlamaForSequenceClassification(cfg).float().train()
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    gen = torch.Generator().manual_seed(1)
    K, T = a.responses, a.prompt + a.response
    pairs = [(i, j) for i in range(K) for j in range(i + 1, K)]
    better = torch.tensor([i for i, _ in pairs])
    worse = torch.tensor([j for _, j in pairs])

    def batch_ids():
        prompt = torch.randint(0, cfg.vocab_size - 1, (a.batch, 1, a.prompt), generator=gen)
        resp = torch.randint(0, cfg.vocab_size - 1, (a.batch, K, a.response), generator=gen)
        return torch.cat([prompt.expand(-1, K, -1), resp], dim=2).reshape(a.batch * K, T)

    data = [batch_ids() for _ in range(a.warmup + a.iters)]

    def step(ids):
        r = model(input_ids=ids, use_cache=False).logits[:, 0].float().view(a.batch, K)
        loss = -torch.nn.functional.logsigmoid(r[:, better] - r[:, worse]).sum()
        (loss / (a.batch * len(pairs))).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(a.warmup):
        step(data[i])
    times = []
    for i in range(a.iters):
        t0 = time.perf_counter()
        step(data[a.warmup + i])
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"impl": "transformers", "layout": "separate", "preset": a.preset,
                      "batch": a.batch, "prompt": a.prompt, "response": a.response,
                      "responses": K, "threads": torch.get_num_threads(), "median_s": med,
                      "steps_per_s": 1.0 / med, "pairs_per_s": a.batch * len(pairs) / med,
                      "tokens_per_s": a.batch * K * T / med, "times_s": times}), flush=True)


if __name__ == "__main__":
    main()
