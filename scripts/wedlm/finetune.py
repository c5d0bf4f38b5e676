#!/usr/bin/env python3
"""finetune.py - self-distillation fine-tune of a WeDLM GGUF: the mask stream learns to predict the model's
OWN AR greedy continuation W tokens ahead (Medusa / lookahead-style), while the AR stream is held in place.

Data: distill_data.py's jsonl (prompt_tokens = [BOS] + P-1 real tokens, tokens = N greedy tokens of the
original model). A sample x = prompt + greedy, length T = P + N.
Per sample the input is [x0 ; xt]:
  x0 = x (clean, positions 0..T-1, causal)  ->  AR loss: next-token CE (real text in the prompt, the
       teacher's own argmax in the continuation) + kl_w * KL(teacher AR || student AR) at every position.
  xt = n_win windows of W mask tokens; window k starts at s_k = P + o + k*W (o ~ U[0, W) per batch, so
       s_k >= P: the greedy rollout from any prefix x[:s] with s >= P is x[s:]); slot j of window k has
       position s_k + j, attends x0 keys at positions < s_k and the slots <= j of its own window (the
       state of a decode window right after the committed prefix); target x[s_k + j] (the greedy token).
  loss = mlm (mean CE over all slots) + ar_w * AR CE + kl_w * KL.
Teacher = the frozen starting model. CPU: --threads 1, nice -n 19.
Eval (held-out distill samples + held-out real Python from test files the data never used): mask accuracy
vs greedy per window distance, AR agreement with the teacher's argmax, AR NLL on real text (student vs teacher).
Saves a train.py-compatible ckpt.pt (export with export_gguf.py --ckpt ... --tokenizer <json>), or
directly a GGUF with --gguf-out.
"""
import argparse
import glob
import json
import math
import os
import random
import signal
import sys
import time

T_START = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_load import load_gguf_model, gguf_tokenizer  # noqa: E402


def log(*a):
    print(*a, flush=True)


def build_mask(T, P, W, n_win, o):
    """Bool attention mask [T + n_win*W][T + n_win*W] (True = attend) and xt positions [n_win*W]."""
    n = n_win * W
    M = torch.zeros(T + n, T + n, dtype=torch.bool)
    M[:T, :T] = torch.ones(T, T, dtype=torch.bool).tril()
    pos = torch.zeros(n, dtype=torch.long)
    for k in range(n_win):
        s = P + o + k * W
        r0 = T + k * W
        for j in range(W):
            M[r0 + j, :s] = True
            M[r0 + j, r0:r0 + j + 1] = True
            pos[k * W + j] = s + j
    return M, pos


def real_text_batches(tok, bos, n_seq, L, seed, exclude_text):
    """Held-out real Python: cuts of test files (never in the distill data nor in the original training set)."""
    files = sorted(set(glob.glob("/usr/lib/python3/dist-packages/**/test_*.py", recursive=True)))
    rng = random.Random(seed)
    rng.shuffle(files)
    out = []
    for f in files:
        if len(out) == n_seq:
            break
        try:
            t = open(f, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        if any(b in t for b in exclude_text) or len(t) < 4000:
            continue
        st0 = rng.randrange(0, len(t) - 3000)
        st0 = t.find("\n", st0) + 1          # whole lines only; tokenize a slice (Python BPE is slow)
        ids = tok.encode(t[st0:st0 + 3000])
        if len(ids) < L + 10:
            continue
        out.append([bos] + ids[:L - 1])
    return torch.tensor(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="starting model (also the frozen teacher)")
    ap.add_argument("--data", required=True, help="distill_data.py jsonl")
    ap.add_argument("--out", required=True, help="output dir (ckpt.pt, log)")
    ap.add_argument("--W", type=int, default=8, help="mask window length")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--ar-w", type=float, default=0.5)
    ap.add_argument("--kl-w", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=30.0, help="wall budget for the training loop")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--val-samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    stop = {"flag": False}

    def on_term(signum, frame):
        stop["flag"] = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    student, kv, cfg = load_gguf_model(a.gguf)
    teacher, _, _ = load_gguf_model(a.gguf)
    for p in teacher.parameters():
        p.requires_grad_(False)
    tok = gguf_tokenizer(kv)
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))   # for export_gguf.py
    bos, mask_id = kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.mask_token_id"]
    rows = [json.loads(l) for l in open(a.data) if l.strip()]
    P = len(rows[0]["prompt_tokens"])
    N = len(rows[0]["tokens"])
    rows = [r for r in rows if len(r["prompt_tokens"]) == P and len(r["tokens"]) == N]
    X = torch.tensor([r["prompt_tokens"] + r["tokens"] for r in rows])  # [n][T]
    T = P + N
    rng = random.Random(a.seed)
    idx = list(range(len(X)))
    rng.shuffle(idx)
    val_idx, tr_idx = idx[:a.val_samples], idx[a.val_samples:]
    W = a.W
    n_win = (N - W + 1) // W     # windows fit for any offset o < W
    log(f"[ft] {len(rows)} samples (train {len(tr_idx)}, val {len(val_idx)}), P={P} N={N} W={W} n_win={n_win} "
        f"train tokens/sample x0={T} xt={n_win*W}")
    bench = []
    for name in ("prompts_code.txt", "prompts_lowent.txt"):
        p = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "wedlm", name)
        if os.path.exists(p):
            bench += [json.loads(l) for l in open(p) if l.strip()]
    real = real_text_batches(tok, bos, 32, 256, 99, bench)
    log(f"[ft] held-out real text: {tuple(real.shape)} from dist-packages test files")
    masks = {o: build_mask(T, P, W, n_win, o) for o in range(W)}

    def forward(model, xb, o):
        M, xpos = masks[o]
        B = xb.shape[0]
        ids = torch.cat([xb, torch.full((B, n_win * W), mask_id, dtype=torch.long)], 1)
        pos = torch.cat([torch.arange(T), xpos])
        h = model.hidden(ids, pos, M)
        tgt_pos = xpos  # target token of each mask slot = x[pos]
        return model.logits(h[:, :T]).float(), model.logits(h[:, T:]).float(), xb[:, tgt_pos]

    def losses(xb, o, with_teacher=True):
        ar_lg, m_lg, m_tgt = forward(student, xb, o)
        V = ar_lg.shape[-1]
        ar_ce = F.cross_entropy(ar_lg[:, :-1].reshape(-1, V), xb[:, 1:].reshape(-1))
        mlm = F.cross_entropy(m_lg.reshape(-1, V), m_tgt.reshape(-1))
        kl = torch.zeros(())
        if with_teacher:
            with torch.no_grad():
                t_lg = teacher(xb).float()
            kl = F.kl_div(F.log_softmax(ar_lg, -1).reshape(-1, V), F.log_softmax(t_lg, -1).reshape(-1, V),
                          log_target=True, reduction="batchmean")
        return ar_ce, mlm, kl, ar_lg, m_lg, m_tgt

    def evaluate(model_is_teacher=False):
        mdl = teacher if model_is_teacher else student
        mdl.eval()
        res = {}
        with torch.no_grad():
            xv = X[val_idx]
            acc = np.zeros(W)
            cnt = 0
            agree = 0.0
            for o in (0,):
                M, xpos = masks[o]
                ids = torch.cat([xv, torch.full((len(xv), n_win * W), mask_id, dtype=torch.long)], 1)
                h = mdl.hidden(ids, torch.cat([torch.arange(T), xpos]), M)
                m_pred = mdl.logits(h[:, T:]).argmax(-1)
                ok = (m_pred == xv[:, xpos]).float().view(len(xv), n_win, W)
                acc += ok.mean((0, 1)).numpy()
                cnt += 1
                ar_pred = mdl.logits(h[:, P - 1:T - 1]).argmax(-1)
                agree += (ar_pred == xv[:, P:T]).float().mean().item()
            res["mask_acc_by_dist"] = [round(float(v), 3) for v in acc / cnt]
            res["ar_agree_greedy"] = agree / cnt
            lg = mdl(real).float()
            res["real_nll"] = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), real[:, 1:].reshape(-1)).item()
        mdl.train()
        return res

    ev0 = evaluate(model_is_teacher=True)
    log(f"[eval] teacher: {json.dumps(ev0)}")
    opt = torch.optim.AdamW([p for p in student.parameters()], lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    student.train()
    budget = a.minutes * 60
    t0 = time.time()
    step, tok_seen, hist = 0, 0, [dict(step=0, **ev0)]
    logf = open(os.path.join(a.out, "ft_log.jsonl"), "w")
    order = []
    while not stop["flag"] and time.time() - t0 < budget:
        el = time.time() - t0
        p = min(1.0, el / budget)
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))
        for g in opt.param_groups:
            g["lr"] = lr
        if len(order) < a.batch:
            order = tr_idx[:]
            rng.shuffle(order)
        bi, order = order[:a.batch], order[a.batch:]
        o = rng.randrange(W)
        ar_ce, mlm, kl, _, _, _ = losses(X[bi], o)
        loss = mlm + a.ar_w * ar_ce + a.kl_w * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        tok_seen += a.batch * (T + n_win * W)
        if step % 10 == 0 or step == 1:
            rec = dict(step=step, loss=loss.item(), mlm=mlm.item(), ar=ar_ce.item(), kl=kl.item(), lr=lr,
                       gn=float(gn), t=time.time() - t0)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(f"[ft] step {step} loss {rec['loss']:.4f} mlm {rec['mlm']:.4f} ar {rec['ar']:.4f} kl {rec['kl']:.4f} "
                f"lr {lr:.2e} gn {rec['gn']:.2f} t={rec['t']:.0f}s")
        if step % a.eval_every == 0:
            ev = evaluate()
            hist.append(dict(step=step, t=time.time() - t0, **ev))
            logf.write(json.dumps(hist[-1]) + "\n")
            log(f"[eval] step {step}: {json.dumps(ev)}")
            save(student, cfg, kv, a, hist, step, tok_seen, t0)
    ev = evaluate()
    hist.append(dict(step=step, t=time.time() - t0, final=True, **ev))
    logf.write(json.dumps(hist[-1]) + "\n")
    log(f"[eval] final step {step}: {json.dumps(ev)}  tokens {tok_seen} (x0+xt) in {time.time()-t0:.0f}s")
    save(student, cfg, kv, a, hist, step, tok_seen, t0)


def save(student, cfg, kv, a, hist, step, tok_seen, t0):
    ck = dict(config=cfg.to_dict(), model={k: v.detach().float().cpu() for k, v in student.state_dict().items()},
              train_args=vars(a), meta=dict(vocab_size=cfg.vocab_size, eos_id=kv["tokenizer.ggml.eos_token_id"],
                                            mask_id=kv["tokenizer.ggml.mask_token_id"]),
              final=dict(step=step, tokens_seen=tok_seen, train_seconds=time.time() - t0), history=hist,
              torch_version=torch.__version__, device="cpu")
    torch.save(ck, os.path.join(a.out, "ckpt.pt"))
    torch.save(ck, os.path.join(a.out, f"ckpt_step{step}.pt"))


if __name__ == "__main__":
    main()
