#!/usr/bin/env python3
"""The peer of `posttrain generate`: transformers' LlamaForCausalLM.generate (PyTorch eager,
float32 on CPU, or --device cuda --dtype bfloat16) on the same model folder and prompts: every prompt's K samples in one batch
(num_return_sequences), top-p sampling, exactly NEW tokens each (min_new_tokens = max, so eos
never ends one early, like --ignore-eos). Times generate() only and prints one JSON line.

  python bench/generate_peer.py --model DIR --prompts IN.jsonl --samples 4 --new 64 --top-p 0.9
"""
import argparse
import json
import time

import torch
from transformers import LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSONL rows with input_ids, one length")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--label", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.dtype == "bfloat16" else torch.float32
    model = LlamaForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device).eval()
    prompts = [json.loads(l)["input_ids"] for l in open(a.prompts) if l.strip()]
    ids = torch.tensor(prompts, device=a.device)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                             top_p=a.top_p, top_k=0, temperature=1.0,
                             num_return_sequences=a.samples, max_new_tokens=a.new,
                             min_new_tokens=a.new, pad_token_id=0)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    new_tokens = (out.shape[1] - ids.shape[1]) * out.shape[0]
    print(json.dumps({"impl": "transformers", "label": a.label, "prompts": len(prompts),
                      "prompt_len": ids.shape[1], "samples": a.samples, "new": a.new,
                      "new_tokens": new_tokens, "seconds": round(seconds, 3),
                      "tokens_per_s": round(new_tokens / seconds, 1)}))


if __name__ == "__main__":
    main()
