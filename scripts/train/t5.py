"""T5 v1.1 in plain PyTorch, under Hugging Face's parameter names, matching the graph the project's ONNX builder writes.

RMS norm without mean subtraction or bias, relative-position buckets (bidirectional in the encoder, causal in the
decoder, one bias table in the first block of each stack), gated-GELU with the tanh approximation, unscaled attention
(T5 folds 1/sqrt(d_kv) into the query weights), and a tied head (decoder output rescaled by d_model^-0.5 and read
through the embedding table) or an untied `lm_head` as the config says. Dropout is configurable but off by default:
the exported graphs have none.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

REQUIRED = ["vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
            "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon"]


class T5Config:
    def __init__(self, cfg):
        missing = [k for k in REQUIRED if k not in cfg]
        if missing:
            raise ValueError(f"config.json: missing {', '.join(missing)}")
        if cfg.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
            raise ValueError('config.json: "feed_forward_proj" must be "gated-gelu" (T5 v1.1)')
        self.raw = dict(cfg)
        for k in REQUIRED:
            setattr(self, k, cfg[k])
        self.num_decoder_layers = cfg.get("num_decoder_layers", cfg["num_layers"])
        self.tie_word_embeddings = cfg.get("tie_word_embeddings", True)
        self.dropout_rate = cfg.get("dropout_rate", 0.0)
        self.pad_token_id = cfg.get("pad_token_id", 0)
        self.eos_token_id = cfg.get("eos_token_id", 1)
        self.decoder_start_token_id = cfg.get("decoder_start_token_id", 0)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        relative_position = relative_position.abs()
    else:
        relative_position = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (
        torch.log(relative_position.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, relative_position, large)


class Attention(nn.Module):
    def __init__(self, c, has_bias, bidirectional):
        super().__init__()
        inner = c.num_heads * c.d_kv
        self.h, self.dkv = c.num_heads, c.d_kv
        self.q = nn.Linear(c.d_model, inner, bias=False)
        self.k = nn.Linear(c.d_model, inner, bias=False)
        self.v = nn.Linear(c.d_model, inner, bias=False)
        self.o = nn.Linear(inner, c.d_model, bias=False)
        self.bidirectional = bidirectional
        self.buckets, self.max_distance = c.relative_attention_num_buckets, c.relative_attention_max_distance
        if has_bias:
            self.relative_attention_bias = nn.Embedding(c.relative_attention_num_buckets, c.num_heads)

    def position_bias(self, q_len, k_len, device):
        ctx = torch.arange(q_len, device=device)[:, None]
        mem = torch.arange(k_len, device=device)[None, :]
        b = relative_position_bucket(mem - ctx, self.bidirectional, self.buckets, self.max_distance)
        return self.relative_attention_bias(b).permute(2, 0, 1).unsqueeze(0)  # [1, h, q, k]

    def split(self, x):
        return x.view(x.shape[0], x.shape[1], self.h, self.dkv).transpose(1, 2)

    def forward(self, x, kv=None, bias=None, need_weights=False):
        kv = x if kv is None else kv
        q, k, v = self.split(self.q(x)), self.split(self.k(kv)), self.split(self.v(kv))
        scores = q @ k.transpose(-1, -2)
        if bias is not None:
            scores = scores + bias
        w = F.softmax(scores.float(), dim=-1).type_as(scores)
        out = (w @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.h * self.dkv)
        return self.o(out), (w if need_weights else None)


class DenseGatedGelu(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wi_0 = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wi_1 = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wo = nn.Linear(c.d_ff, c.d_model, bias=False)
        self.drop = nn.Dropout(c.dropout_rate)

    def forward(self, x):
        return self.wo(self.drop(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)))


class SelfAttentionLayer(nn.Module):
    def __init__(self, c, has_bias, bidirectional):
        super().__init__()
        self.SelfAttention = Attention(c, has_bias, bidirectional)
        self.layer_norm = RMSNorm(c.d_model, c.layer_norm_epsilon)
        self.drop = nn.Dropout(c.dropout_rate)

    def forward(self, x, bias):
        return x + self.drop(self.SelfAttention(self.layer_norm(x), bias=bias)[0])


class CrossAttentionLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.EncDecAttention = Attention(c, False, False)
        self.layer_norm = RMSNorm(c.d_model, c.layer_norm_epsilon)
        self.drop = nn.Dropout(c.dropout_rate)

    def forward(self, x, memory, mask, need_weights):
        out, w = self.EncDecAttention(self.layer_norm(x), kv=memory, bias=mask, need_weights=need_weights)
        return x + self.drop(out), w


class FeedForwardLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.DenseReluDense = DenseGatedGelu(c)
        self.layer_norm = RMSNorm(c.d_model, c.layer_norm_epsilon)
        self.drop = nn.Dropout(c.dropout_rate)

    def forward(self, x):
        return x + self.drop(self.DenseReluDense(self.layer_norm(x)))


class Block(nn.Module):
    def __init__(self, c, has_bias, decoder):
        super().__init__()
        layers = [SelfAttentionLayer(c, has_bias, bidirectional=not decoder)]
        if decoder:
            layers.append(CrossAttentionLayer(c))
        layers.append(FeedForwardLayer(c))
        self.layer = nn.ModuleList(layers)


class Stack(nn.Module):
    def __init__(self, c, n, decoder):
        super().__init__()
        self.block = nn.ModuleList([Block(c, i == 0, decoder) for i in range(n)])
        self.final_layer_norm = RMSNorm(c.d_model, c.layer_norm_epsilon)
        self.drop = nn.Dropout(c.dropout_rate)


NEG = -1e9


class T5(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = config if isinstance(config, T5Config) else T5Config(config)
        self.config = c
        self.shared = nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = Stack(c, c.num_layers, decoder=False)
        self.decoder = Stack(c, c.num_decoder_layers, decoder=True)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.init_weights()

    def init_weights(self):
        """Mesh-TensorFlow's initialisation, as Hugging Face applies it to T5 (query std carries 1/sqrt(d_kv))."""
        c = self.config
        nn.init.normal_(self.shared.weight, std=1.0)
        if not c.tie_word_embeddings:
            nn.init.normal_(self.lm_head.weight, std=c.d_model ** -0.5)
        for m in self.modules():
            if isinstance(m, Attention):
                nn.init.normal_(m.q.weight, std=(c.d_model * c.d_kv) ** -0.5)
                nn.init.normal_(m.k.weight, std=c.d_model ** -0.5)
                nn.init.normal_(m.v.weight, std=c.d_model ** -0.5)
                nn.init.normal_(m.o.weight, std=(c.num_heads * c.d_kv) ** -0.5)
                if hasattr(m, "relative_attention_bias"):
                    nn.init.normal_(m.relative_attention_bias.weight, std=c.d_model ** -0.5)
            elif isinstance(m, DenseGatedGelu):
                nn.init.normal_(m.wi_0.weight, std=c.d_model ** -0.5)
                nn.init.normal_(m.wi_1.weight, std=c.d_model ** -0.5)
                nn.init.normal_(m.wo.weight, std=c.d_ff ** -0.5)

    @torch.no_grad()
    def init_copy_circuit(self):
        """Starts from-scratch training with the parts of a copy circuit in place: one encoder head attends to the
        previous token (its relative-position bias for offset -1 raised), and every decoder cross-attention's o·v maps
        the attended encoder state back onto itself (an orthogonal projection), so through the tied head a decoder that
        attends to a token already predicts it. Training then has to learn where to look, not how to copy."""
        c = self.config
        bias = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        previous = relative_position_bucket(torch.tensor([-1]), True, c.relative_attention_num_buckets, c.relative_attention_max_distance)
        bias[previous[0], 0] = 4.0
        inner = c.num_heads * c.d_kv
        for blk in self.decoder.block:
            att = blk.layer[1].EncDecAttention
            q, _ = torch.linalg.qr(torch.randn(max(inner, c.d_model), min(inner, c.d_model)))
            v = q if inner >= c.d_model else q.t()
            att.v.weight.copy_(v[:inner, :c.d_model])
            att.o.weight.copy_(v[:inner, :c.d_model].t())

    @torch.no_grad()
    def init_match_head(self, head=1):
        """Starts one encoder head as a same-token matcher looking back: its query projection equals its key
        projection, so a token's score is highest at earlier copies of itself, and its relative-position bias masks
        the token itself and every later one (T5 shares the bias across the stack's layers, so this head looks back
        in every layer). In the reader's input the question comes first, so a title or context token finds the same
        token in the question when the question names it: the raw material of telling the passage about the person
        asked for from passages about others who share a surname."""
        c = self.config
        if c.num_heads < 2:
            raise ValueError("--match-init needs at least 2 heads (head 0 is the copy circuit's previous-token head)")
        first = self.encoder.block[0].layer[0].SelfAttention
        rows = slice(head * c.d_kv, (head + 1) * c.d_kv)
        first.q.weight[rows] = first.k.weight[rows]
        bias = first.relative_attention_bias.weight
        half = c.relative_attention_num_buckets // 2
        bias[half:, head] = -20.0  # later positions
        bias[0, head] = -20.0  # the token itself

    def encode(self, input_ids, attention_mask):
        """[n, len] ids of passages encoded alone → [n, len, d] states."""
        x = self.encoder.drop(self.shared(input_ids))
        first = self.encoder.block[0].layer[0].SelfAttention
        bias = first.position_bias(input_ids.shape[1], input_ids.shape[1], input_ids.device)
        bias = bias + (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * NEG
        for blk in self.encoder.block:
            x = blk.layer[0](x, bias)
            x = blk.layer[1](x)
        return self.encoder.drop(self.encoder.final_layer_norm(x))

    def decode(self, decoder_input_ids, memory, memory_mask, need_weights=False):
        """Teacher-forced decoder over a fused memory [b, m, d] → logits [b, t, V] (and per-layer cross-attention)."""
        t = decoder_input_ids.shape[1]
        x = self.decoder.drop(self.shared(decoder_input_ids))
        first = self.decoder.block[0].layer[0].SelfAttention
        causal = torch.triu(torch.full((t, t), NEG, device=x.device), diagonal=1)
        bias = first.position_bias(t, t, x.device) + causal
        mask = (1.0 - memory_mask[:, None, None, :].to(x.dtype)) * NEG
        weights = []
        for blk in self.decoder.block:
            x = blk.layer[0](x, bias)
            x, w = blk.layer[1](x, memory, mask, need_weights)
            weights.append(w)
            x = blk.layer[2](x)
        x = self.decoder.drop(self.decoder.final_layer_norm(x))
        if self.config.tie_word_embeddings:
            logits = (x * self.config.d_model ** -0.5) @ self.shared.weight.t()
        else:
            logits = self.lm_head(x)
        return logits, weights

    def fid_memory(self, input_ids, attention_mask):
        """[b, n, len] passages → memory [b, n*len, d] and its mask: each passage encoded alone, states concatenated."""
        b, n, l = input_ids.shape
        states = self.encode(input_ids.view(b * n, l), attention_mask.view(b * n, l))
        return states.view(b, n * l, -1), attention_mask.view(b, n * l)
