#!/usr/bin/env python3
"""The peer of bench_dpo: the same DPO optimizer steps in transformers + PyTorch eager, with the
reference model kept in memory and run every step, as TRL's DPOTrainer does without
precompute_ref_log_probs.

Per step: `batch` pairs of a `prompt`-token prompt with chosen and rejected of `resp` tokens,
concatenated as 2*batch rows (TRL's concatenated_forward); the reference forward under no_grad;
log-prob sums over the response tokens; sigmoid loss (beta 0.1) plus 0.2 x the NLL of chosen per
token (rpo); backward, clip 1.0, fused AdamW. Prints one JSON line: median seconds per step and
the peak resident memory above the process's baseline (after imports).

  python bench/dpo_peer.py --preset tiny --batch 8 --prompt 128 --resp 128 --iters 5
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {  # core/model/llama_config.cpp's presets
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                 tie_word_embeddings=True, rope_theta=10000.0),
    "smol-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      head_dim=64, tie_word_embeddings=True, rope_theta=100000.0),
}


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--resp", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    baseline = rss_mib()
    torch.manual_seed(0)
    p = dict(PRESETS[a.preset])
    theta = p.pop("rope_theta")
    cfg = LlamaConfig(**p, rms_norm_eps=1e-5, max_position_embeddings=8192,
                      rope_parameters={"rope_type": "default", "rope_theta": theta},
                      attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).float().train()
    ref = LlamaForCausalLM(cfg).float().eval()
    ref.load_state_dict(model.state_dict())
    for q in ref.parameters():
        q.requires_grad_(False)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-6, betas=(0.9, 0.95), eps=1e-8, fused=True)
    gen = torch.Generator().manual_seed(1)
    steps = a.warmup + a.iters
    V, B, P, R = cfg.vocab_size, a.batch, a.prompt, a.resp
    data = [(torch.randint(0, V, (B, P), generator=gen), torch.randint(0, V, (B, R), generator=gen),
             torch.randint(0, V, (B, R), generator=gen)) for _ in range(steps)]

    def logps(m, ids):  # ids [2B, P + R] -> per-row sums over the response tokens, token logps
        logits = m(ids, use_cache=False).logits[:, P - 1:-1].float()  # [2B, R, V]
        lp = torch.log_softmax(logits, -1).gather(2, ids[:, P:].unsqueeze(2)).squeeze(2)
        return lp.sum(1), lp

    def step(i):
        prompt, chosen, rejected = data[i]
        ids = torch.cat([torch.cat([prompt, chosen], 1), torch.cat([prompt, rejected], 1)], 0)
        with torch.no_grad():
            ref_sums, _ = logps(ref, ids)
        sums, lp = logps(model, ids)
        d = (sums[:B] - ref_sums[:B]) - (sums[B:] - ref_sums[B:])
        loss = -F.logsigmoid(0.1 * d).mean() + 0.2 * (-lp[:B].mean())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(a.warmup):
        step(i)
    times = []
    for i in range(a.warmup, steps):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "transformers", "preset": a.preset, "batch": a.batch,
                      "prompt": a.prompt, "resp": a.resp, "threads": torch.get_num_threads(),
                      "median_s": med, "steps_per_s": 1.0 / med,
                      "peak_mem_mib": peak - baseline, "times_s": times}), flush=True)


if __name__ == "__main__":
    main()
