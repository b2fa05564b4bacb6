#!/usr/bin/env python3
"""Train the bundled demo model (models/demo): a small Mamba2 language model on the Austen novels.

The model is transformers' Mamba2ForCausalLM (its pure-PyTorch path; mamba_ssm is not needed),
trained from scratch with AdamW under bf16 autocast on one GPU, on the tokenizer made by
tools/train_tokenizer.py. The corpus preparation and the held-out split (the last 5% of every
novel) come from tools/train_tokenizer.py, so both scripts see the same text.

Written to --out:
  config.json, model.safetensors   transformers format, float16 weights (the best held-out checkpoint)
  tokenizer.json                   a copy of --tokenizer
  train_log.json                   settings, data sizes, loss curve, held-out loss, timings, sample

Held-out loss is evaluated over the whole held-out text in windows of --seq-len tokens (each window
starts from an empty state), reported in nats per token and in bits per UTF-8 byte of held-out text.
The final figure is measured on the saved float16 weights (upcast to float32).

Every setting is a flag; the defaults are the settings models/demo was trained with (see
models/README.md for the exact command and the device it ran on). Example:
  python3 tools/train_demo.py --data-dir .cache/austen --tokenizer models/demo/tokenizer.json --out /tmp/demo
Smoke test on CPU:
  python3 tools/train_demo.py --device cpu --d-model 64 --n-layer 2 --max-steps 5 --batch-size 2 --seq-len 64 --out /tmp/x
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_tokenizer import EOT, load_corpus  # noqa: E402

PROMPT = "It is a truth universally acknowledged"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data/austen")
    ap.add_argument("--tokenizer", default="models/demo/tokenizer.json")
    ap.add_argument("--out", default="/tmp/demo")
    ap.add_argument("--heldout-frac", type=float, default=0.05)
    # model
    ap.add_argument("--d-model", type=int, default=320)
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--d-state", type=int, default=64)
    ap.add_argument("--headdim", type=int, default=64)
    ap.add_argument("--expand", type=int, default=2)
    ap.add_argument("--n-groups", type=int, default=1)
    ap.add_argument("--conv-kernel", type=int, default=4)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--init-range", type=float, default=0.02)
    ap.add_argument("--pad-vocab-multiple", type=int, default=16)
    # optimisation
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=float, default=24.0, help="tokens seen / training tokens; sets the step count")
    ap.add_argument("--max-steps", type=int, default=550, help="length of the LR schedule; overrides --epochs when > 0")
    ap.add_argument("--stop-after", type=int, default=457,
                    help="stop after this many steps without changing the schedule (0: run it all); models/demo was "
                         "stopped by its --time-limit after 457 of 550 steps")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.2,
                    help="training-only dropout on the embedding output and on every mixer output (added with hooks; "
                         "the saved model is a plain Mamba2)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=0.0, help="seconds; stop training early when exceeded (0: none)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default="bf16", choices=["bf16", "none"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--sample-tokens", type=int, default=48)
    return ap.parse_args(argv)


def make_model(args, vocab_size):
    from transformers import Mamba2Config, Mamba2ForCausalLM

    d_inner = args.expand * args.d_model
    assert d_inner % args.headdim == 0
    cfg = Mamba2Config(
        vocab_size=vocab_size,
        hidden_size=args.d_model,
        num_hidden_layers=args.n_layer,
        state_size=args.d_state,
        head_dim=args.headdim,
        num_heads=d_inner // args.headdim,
        expand=args.expand,
        n_groups=args.n_groups,
        conv_kernel=args.conv_kernel,
        chunk_size=args.chunk_size,
        use_bias=False,
        use_conv_bias=True,
        residual_in_fp32=True,
        rescale_prenorm_residual=True,
        initializer_range=args.init_range,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        layer_norm_epsilon=1e-5,
    )
    torch.manual_seed(args.seed)
    model = Mamba2ForCausalLM(cfg)
    assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr(), "embeddings not tied"
    return model


def add_dropout_hooks(model, p):
    if p <= 0:
        return
    def hook(module, inputs, output):
        return F.dropout(output, p, module.training)
    model.backbone.embeddings.register_forward_hook(hook)
    for layer in model.backbone.layers:
        layer.mixer.register_forward_hook(hook)


def lm_loss(model, x, reduction="mean"):
    logits = model(input_ids=x[:, :-1]).logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction=reduction)


@torch.no_grad()
def evaluate(model, heldout, seq_len, batch, device, amp):
    """Sum of nats over every held-out token after the first, windows of seq_len+1 overlapping by one token."""
    model.eval()
    n = heldout.numel()
    starts = list(range(0, n - 1, seq_len))
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        rows = [heldout[s:s + seq_len + 1] for s in starts[i:i + batch]]
        full = [r for r in rows if r.numel() == seq_len + 1]
        tail = [r for r in rows if r.numel() != seq_len + 1]  # the ragged last window: its own batch
        for group in ([torch.stack(full)] if full else []) + [r[None] for r in tail]:
            group = group.to(device)
            with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                loss = lm_loss(model, group, reduction="sum")
            total += loss.item()
            count += group.numel() - group.size(0)
    model.train()
    return total, count


@torch.no_grad()
def greedy(model, ids, steps, device):
    model.eval()
    x = torch.tensor([ids], device=device)
    for _ in range(steps):
        nxt = model(input_ids=x).logits[0, -1].float().argmax()
        x = torch.cat([x, nxt.view(1, 1)], dim=1)
    model.train()
    return x[0, len(ids):].tolist()


def main(argv=None):
    args = parse_args(argv)
    from tokenizers import Tokenizer

    t_start = time.time()
    torch.manual_seed(args.seed)
    device = args.device
    amp = args.amp == "bf16" and device != "cpu"
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    tok = Tokenizer.from_file(args.tokenizer)
    eot = tok.token_to_id(EOT)
    assert eot == 0
    train_texts, held_texts, names = load_corpus(args.data_dir, args.heldout_frac)
    train_ids, held_ids = [], []
    for enc in tok.encode_batch(train_texts):
        train_ids += [eot] + enc.ids
    for enc in tok.encode_batch(held_texts):
        held_ids += [eot] + enc.ids
    train = torch.tensor(train_ids, dtype=torch.long)
    heldout = torch.tensor(held_ids, dtype=torch.long)
    held_bytes = sum(len(t.encode("utf-8")) for t in held_texts)
    vocab = tok.get_vocab_size()
    m = args.pad_vocab_multiple
    vocab_padded = (vocab + m - 1) // m * m
    print(f"train tokens {train.numel()}, held-out tokens {heldout.numel()} ({held_bytes} bytes), vocab {vocab} -> {vocab_padded}", flush=True)

    model = make_model(args, vocab_padded).to(device)
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    print(f"parameters {n_params} ({n_params * 2 / 1e6:.2f} MB as float16)", flush=True)
    add_dropout_hooks(model, args.dropout)
    model.train()

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8, fused=device.startswith("cuda"),
    )
    tokens_per_step = args.batch_size * args.seq_len
    max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.epochs * train.numel() / tokens_per_step)
    print(f"steps {max_steps}, tokens/step {tokens_per_step}, epochs {max_steps * tokens_per_step / train.numel():.2f}", flush=True)

    def lr_at(step):
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        t = (step - args.warmup_steps) / max(1, max_steps - args.warmup_steps)
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    fwd = torch.compile(model) if args.compile else model
    gen = torch.Generator().manual_seed(args.seed + 1)
    hi = train.numel() - args.seq_len - 1
    log = {"curve": [], "evals": []}
    best = (float("inf"), -1, None)
    t0 = time.time()
    tok_seen = 0
    step = 0
    stopped_early = False
    eval_batch = max(1, args.batch_size)
    t_mark = None
    eval_time = 0.0
    requested_steps = max_steps
    while step < max_steps and not (args.stop_after > 0 and step >= args.stop_after):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        offs = torch.randint(0, hi, (args.batch_size,), generator=gen)
        x = torch.stack([train[o:o + args.seq_len + 1] for o in offs.tolist()]).to(device, non_blocking=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            loss = lm_loss(fwd, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        tok_seen += tokens_per_step
        last = step == max_steps - 1 or step + 1 == args.stop_after
        if step % 10 == 0 or last:
            lv = loss.item()
            el = time.time() - t0
            log["curve"].append([step, round(lv, 4)])
            if step % 50 == 0 or last:
                print(f"step {step:5d} loss {lv:.4f} gnorm {gnorm.item():.3f} lr {lr_at(step):.2e} "
                      f"{el:7.1f}s {tok_seen / max(el, 1e-9):,.0f} tok/s", flush=True)
            # With --time-limit, shorten the whole schedule (cosine included) once the step time is known,
            # so that it ends inside the limit; the step count used is logged (rerun with --max-steps).
            if args.time_limit > 0 and step == 10:
                t_mark = time.time() - eval_time  # evaluations are not counted in the step time
            if args.time_limit > 0 and step == 40 and t_mark is not None:
                dt = (time.time() - eval_time - t_mark) / 30
                fit = max(step + 1, 41 + int((0.9 * args.time_limit - (time.time() - t0)) / dt))
                print(f"  {dt * 1000:.1f} ms/step, {tokens_per_step / dt:,.0f} tok/s steady", flush=True)
                if fit < max_steps:
                    print(f"  time limit {args.time_limit:.0f}s: steps {max_steps} -> {fit}", flush=True)
                    max_steps = fit
                    last = step == max_steps - 1 or step + 1 == args.stop_after
        over = args.time_limit > 0 and time.time() - t0 > args.time_limit
        if (step + 1) % args.eval_every == 0 or last or over:
            t_eval = time.time()
            nats, cnt = evaluate(model, heldout, args.seq_len, eval_batch, device, amp)
            vl = nats / cnt
            log["evals"].append({"step": step + 1, "loss": round(vl, 4), "bpb": round(nats / math.log(2) / held_bytes, 4),
                                 "time_s": round(time.time() - t0, 1)})
            print(f"  eval step {step + 1}: held-out {vl:.4f} nats/token, {nats / math.log(2) / held_bytes:.4f} bits/byte", flush=True)
            if vl < best[0]:
                best = (vl, step + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
            eval_time += time.time() - t_eval
        step += 1
        if over:
            stopped_early = True
            print(f"time limit reached after {step} steps", flush=True)
            break
    train_time = time.time() - t0
    steps_done = step

    # best checkpoint -> float16 -> save; evaluate the saved float16 weights (upcast to float32)
    model.load_state_dict(best[2])
    model.eval()
    model = model.to(torch.float16)
    model.config.dtype = "float16"
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)  # safetensors
    # Same JSON spelling of the infinite upper dt limit in every transformers version (and as in tests/fixtures).
    cfg_path = os.path.join(args.out, "config.json")
    with open(cfg_path) as f:
        cfg_json = json.load(f)
    lo, hi = model.config.time_step_limit
    cfg_json["time_step_limit"] = [float(lo), {"__float__": "Infinity"} if math.isinf(hi) else float(hi)]
    # rescale_prenorm_residual only matters at initialisation, but transformers' from_pretrained applies
    # it again to loaded weights (out_proj /= sqrt(n_layer)), which would load a different model than
    # the one trained: ship it off.
    cfg_json["rescale_prenorm_residual"] = False
    with open(cfg_path, "w") as f:
        json.dump(cfg_json, f, indent=2, sort_keys=True)
        f.write("\n")
    gc = os.path.join(args.out, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    shutil.copyfile(args.tokenizer, os.path.join(args.out, "tokenizer.json"))
    model = model.float()
    nats, cnt = evaluate(model, heldout, args.seq_len, eval_batch, device, False)
    f16_loss = nats / cnt
    f16_bpb = nats / math.log(2) / held_bytes
    prompt_ids = tok.encode(PROMPT).ids
    sample_ids = greedy(model, prompt_ids, args.sample_tokens, device)
    sample = PROMPT + tok.decode(sample_ids)
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"best step {best[1]}; float16 held-out {f16_loss:.4f} nats/token, {f16_bpb:.4f} bits/byte; file {size} bytes")
    print("greedy:", repr(sample), flush=True)

    log.update({
        "args": vars(args), "novels": names,
        "train_tokens": train.numel(), "heldout_tokens": heldout.numel(), "heldout_bytes": held_bytes,
        "heldout_predicted_tokens": cnt,
        "vocab": vocab, "vocab_padded": vocab_padded, "parameters": n_params, "safetensors_bytes": size,
        "requested_steps": requested_steps, "max_steps": max_steps, "steps_done": steps_done, "stopped_early": stopped_early,
        "tokens_per_step": tokens_per_step, "tokens_seen": steps_done * tokens_per_step,
        "epochs_seen": round(steps_done * tokens_per_step / train.numel(), 2),
        "train_seconds": round(train_time, 1), "total_seconds": round(time.time() - t_start, 1),
        "tokens_per_second": round(steps_done * tokens_per_step / train_time),
        "best_step": best[1], "best_heldout_loss_bf16": round(best[0], 4),
        "heldout_loss_f16": round(f16_loss, 4), "heldout_bits_per_byte_f16": round(f16_bpb, 4),
        "greedy_sample": sample,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    })
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    return log


if __name__ == "__main__":
    main()
