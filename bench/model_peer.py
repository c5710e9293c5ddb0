#!/usr/bin/env python3
"""The peer of bench_model: transformers' LlamaForCausalLM in PyTorch eager (sdpa attention),
float32, on random weights of the same preset shape. forward = model(ids).logits under
inference_mode; train = next-token cross-entropy (mean) + backward. Prints one JSON line.

  python bench/model_peer.py --preset tiny --batch 8 --seq 128 --mode forward --iters 5
"""
import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# The shapes of core/model/llama_config.cpp's presets.
PRESETS = {
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
    ap.add_argument("--mode", default="forward", choices=["forward", "train"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = dict(PRESETS[a.preset])
    theta = p.pop("rope_theta")
    cfg = LlamaConfig(**p, rms_norm_eps=1e-5, max_position_embeddings=8192,
                      rope_parameters={"rope_type": "default", "rope_theta": theta},
                      attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).float()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))

    def step():
        if a.mode == "forward":
            with torch.inference_mode():
                model(ids, use_cache=False).logits
        else:
            model.zero_grad(set_to_none=True)
            logits = model(ids, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, cfg.vocab_size).float(), ids[:, 1:].reshape(-1))
            loss.backward()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"impl": "transformers", "preset": a.preset, "mode": a.mode,
                      "batch": a.batch, "seq": a.seq, "threads": torch.get_num_threads(),
                      "median_s": med, "tokens_per_s": a.batch * a.seq / med,
                      "times_s": times}), flush=True)


if __name__ == "__main__":
    main()
