#!/usr/bin/env python3
"""The peer of bench_sft: the same SFT optimizer steps in transformers + PyTorch eager.

LlamaForCausalLM (sdpa attention, float32 on CPU) of a preset shape with random weights; each
step runs `accum` micro-batches of `batch` rows x `seq` tokens (next-token cross-entropy summed
over the targets, divided by the step's target count, backward), clips the gradient norm to 1.0
and takes an AdamW step (torch.optim.AdamW fused, betas 0.9/0.95, weight decay on matrices only),
as posttrain's trainer does. Prints one JSON line: median seconds per step over `iters` steps.

  python bench/sft_peer.py --preset tiny --batch 8 --seq 256 --iters 5
"""
import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

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
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = dict(PRESETS[a.preset])
    theta = p.pop("rope_theta")
    cfg = LlamaConfig(**p, rms_norm_eps=1e-5, max_position_embeddings=8192,
                      rope_parameters={"rope_type": "default", "rope_theta": theta},
                      attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).float().train()
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    # fused=True: the fused AdamW kernel, as posttrain's trainer uses and as transformers' Trainer
    # picks by default with torch >= 2.8 (optim "adamw_torch_fused"); the for-loop default of
    # torch.optim.AdamW on CPU would charge the peer ~10 small ops per parameter we do not pay.
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    gen = torch.Generator().manual_seed(1)
    micro = [torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=gen)
             for _ in range(a.accum)]

    def step():
        n_targets = sum(ids[:, 1:].numel() for ids in micro)
        for ids in micro:
            logits = model(ids, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, cfg.vocab_size).float(), ids[:, 1:].reshape(-1),
                reduction="sum")
            (loss / n_targets).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    tokens = a.batch * a.seq * a.accum
    print(json.dumps({"impl": "transformers", "preset": a.preset, "batch": a.batch,
                      "seq": a.seq, "accum": a.accum, "threads": torch.get_num_threads(),
                      "median_s": med, "steps_per_s": 1.0 / med,
                      "tokens_per_s": tokens / med, "times_s": times}), flush=True)


if __name__ == "__main__":
    main()
