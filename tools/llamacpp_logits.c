/*
 * llamacpp_logits: llama.cpp's own logits for token ids, as the reference that tools/compare_llamacpp.ts
 * and tools/perplexity.ts hold this engine against. Built by tools/compare_llamacpp.ts against the
 * libllama it builds (~/.cache/llamacpp); nothing here is part of the engine.
 *
 *   llamacpp_logits logits  MODEL.gguf IDS THREADS OUT
 *       IDS: int32 little-endian token ids, one sequence fed from an empty state as one batch.
 *       OUT: float32 logits (n_ids × n_vocab), the row after each id.
 *   llamacpp_logits matmuls MODEL.gguf IDS THREADS OUTDIR
 *       as `logits`, and through the context's eval callback writes the input (float32, n_ids rows) and
 *       output of every matrix product of layer 0 and of the lm_head to OUTDIR/<weight name>.{in,out}.f32,
 *       for tools/llamacpp_reference.py --matmuls to recompute.
 *   llamacpp_logits windows MODEL.gguf IDS THREADS SEQ_LEN
 *       tools/train_demo.py's held-out evaluation: windows of SEQ_LEN + 1 ids starting every SEQ_LEN
 *       ids, each from an empty state (llama_memory_clear), every id after a window's first predicted;
 *       prints {"nats": sum of -log softmax, "count": predictions, "vocab": n} as JSON on stdout
 *       (log-softmax in double).
 *
 * Diagnostics go to stderr; llama.cpp's own log is silenced unless LLAMACPP_LOG is set. LLAMACPP_NO_REPACK
 * turns off the repacked (interleaved) weight layouts, as llama-bench --repack 0 does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level;
    (void)text;
    (void)user;
}

/* matmuls mode: the directory the layer-0 and lm_head products go to (NULL: no dump). */
static const char *dump_dir = NULL;

static int dump(const char *dir, const char *name, const char *what, const struct ggml_tensor *t) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s.f32", dir, name, what);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = fwrite(t->data, 1, ggml_nbytes(t), f);
    fclose(f);
    return n == ggml_nbytes(t);
}

/* ggml eval callback: asked once per node whether we want its data (ask), then given it. */
static bool dump_matmuls(struct ggml_tensor *t, bool ask, void *user) {
    (void)user;
    if (t->op != GGML_OP_MUL_MAT || t->type != GGML_TYPE_F32 || t->src[1]->type != GGML_TYPE_F32) return false;
    const char *w = t->src[0]->name;
    const int wanted = strncmp(w, "blk.0.", 6) == 0 || strcmp(w, "output.weight") == 0 ||
                       strcmp(w, "token_embd.weight") == 0;
    if (ask || !wanted) return wanted;
    if (!dump(dump_dir, w, "in", t->src[1]) || !dump(dump_dir, w, "out", t))
        fprintf(stderr, "llamacpp_logits: cannot write %s/%s.*.f32\n", dump_dir, w);
    return true;
}

static int32_t *read_ids(const char *path, int *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "llamacpp_logits: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int32_t *ids = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (!ids || fread(ids, 1, (size_t)bytes, f) != (size_t)bytes || bytes % 4 != 0) {
        fprintf(stderr, "llamacpp_logits: cannot read %s as int32 ids\n", path);
        fclose(f);
        free(ids);
        return NULL;
    }
    fclose(f);
    *n = (int)(bytes / 4);
    return ids;
}

/* Feeds ids[0..n) to sequence 0 at positions 0..n-1 with a logits row for every one. */
static int decode_all(struct llama_context *ctx, struct llama_batch *batch, const int32_t *ids, int n) {
    batch->n_tokens = n;
    for (int i = 0; i < n; i++) {
        batch->token[i] = ids[i];
        batch->pos[i] = i;
        batch->n_seq_id[i] = 1;
        batch->seq_id[i][0] = 0;
        batch->logits[i] = 1;
    }
    int rc = llama_decode(ctx, *batch);
    if (rc != 0) fprintf(stderr, "llamacpp_logits: llama_decode returned %d\n", rc);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 6 || (strcmp(argv[1], "logits") != 0 && strcmp(argv[1], "windows") != 0 &&
                      strcmp(argv[1], "matmuls") != 0)) {
        fprintf(stderr,
                "usage: llamacpp_logits logits MODEL.gguf IDS THREADS OUT\n"
                "       llamacpp_logits matmuls MODEL.gguf IDS THREADS OUTDIR\n"
                "       llamacpp_logits windows MODEL.gguf IDS THREADS SEQ_LEN\n");
        return 2;
    }
    const int windows = strcmp(argv[1], "windows") == 0;
    if (strcmp(argv[1], "matmuls") == 0) dump_dir = argv[5];
    const int threads = atoi(argv[4]);
    int n = 0;
    int32_t *ids = read_ids(argv[3], &n);
    if (!ids || n < 2) return 1;
    const int seq_len = windows ? atoi(argv[5]) : n;
    if (seq_len < 1) return 2;

    if (!getenv("LLAMACPP_LOG")) llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    /* LLAMACPP_NO_REPACK=1: no repacked weight layouts (llama-bench --repack 0), ggml's plain kernels */
    if (getenv("LLAMACPP_NO_REPACK")) mp.use_extra_bufts = false;
    struct llama_model *model = llama_model_load_from_file(argv[2], mp);
    if (!model) {
        fprintf(stderr, "llamacpp_logits: cannot load %s\n", argv[2]);
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)seq_len + 1;
    cp.n_batch = (uint32_t)seq_len;
    cp.n_ubatch = (uint32_t)seq_len;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    if (dump_dir) {
        cp.cb_eval = dump_matmuls;
        cp.cb_eval_user_data = NULL;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llamacpp_logits: cannot create a context\n");
        return 1;
    }
    struct llama_batch batch = llama_batch_init(seq_len, 0, 1);
    int status = 0;

    if (dump_dir) {
        status = decode_all(ctx, &batch, ids, n) != 0;
    } else if (!windows) {
        FILE *out = fopen(argv[5], "wb");
        if (!out) {
            fprintf(stderr, "llamacpp_logits: cannot write %s\n", argv[5]);
            return 1;
        }
        if (decode_all(ctx, &batch, ids, n) != 0) return 1;
        for (int i = 0; i < n && status == 0; i++) {
            const float *row = llama_get_logits_ith(ctx, i);
            if (!row || fwrite(row, sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab) status = 1;
        }
        fclose(out);
    } else {
        double nats = 0;
        long count = 0;
        for (int s = 0; s < n - 1 && status == 0; s += seq_len) {
            const int len = (s + seq_len + 1 <= n ? seq_len + 1 : n - s); /* ids in this window */
            llama_memory_clear(llama_get_memory(ctx), true);
            if (decode_all(ctx, &batch, ids + s, len - 1) != 0) {
                status = 1;
                break;
            }
            for (int i = 0; i < len - 1; i++) {
                const float *row = llama_get_logits_ith(ctx, i);
                double max = -INFINITY, sum = 0;
                for (int v = 0; v < n_vocab; v++) max = row[v] > max ? row[v] : max;
                for (int v = 0; v < n_vocab; v++) sum += exp((double)row[v] - max);
                nats += log(sum) + max - row[ids[s + i + 1]];
                count++;
            }
        }
        if (status == 0) printf("{\"nats\": %.17g, \"count\": %ld, \"vocab\": %d}\n", nats, count, n_vocab);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(ids);
    return status;
}
