/*
 * graph.cu — recording the context's calls into a CUDA graph and replaying it (mxmoe_graph_*).
 *
 * The recording happens on a stream of the backend's own, swapped in for the caller's while it
 * lasts: the legacy default stream (a context's stream when none was given) cannot be captured,
 * and the caller's stream stays free for other work. Capture is thread-local, so other threads'
 * CUDA calls are not affected. Every operation already issues only stream-ordered work (no
 * allocation outside the stream-ordered pool, no host synchronisation), and programmatic
 * dependent launches become programmatic edges of the graph, so a replay keeps their overlap.
 */
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_ops.h"

mxmoe_status mxmoe_graph_begin_cuda(mxmoe_ctx* ctx) {
    MXMOE_CUDA_ENTER(ctx);
    mxmoe_cuda_state* state = cuda_state(ctx);
    if (state->capture_stream == nullptr) {
        MXMOE_CUDA_CHECK(ctx,
                         cudaStreamCreateWithFlags(&state->capture_stream, cudaStreamNonBlocking));
    }
    MXMOE_CUDA_CHECK(
        ctx, cudaStreamBeginCapture(state->capture_stream, cudaStreamCaptureModeThreadLocal));
    state->stream_before_capture = ctx->params.cuda_stream;
    ctx->params.cuda_stream = state->capture_stream;
    return MXMOE_OK;
}

mxmoe_status mxmoe_graph_end_cuda(mxmoe_ctx* ctx, void** graph) {
    mxmoe_cuda_state* state = cuda_state(ctx);
    ctx->params.cuda_stream = state->stream_before_capture;
    cudaGraph_t recorded = nullptr;
    const cudaError_t err = cudaStreamEndCapture(state->capture_stream, &recorded);
    cudaGetLastError(); /* a failed capture leaves its error pending: the next call's is its own */
    if (err != cudaSuccess) {
        return mxmoe_fail(ctx, MXMOE_ERR_BACKEND,
                          "graph_end: the recording failed: %s (was a CUDA call made on this "
                          "thread that a capture forbids?)",
                          cudaGetErrorString(err));
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, recorded, 0);
    cudaGraphDestroy(recorded);
    MXMOE_CUDA_CHECK(ctx, inst);
    *graph = exec;
    return MXMOE_OK;
}

mxmoe_status mxmoe_graph_replay_cuda(mxmoe_ctx* ctx, const void* graph) {
    MXMOE_CUDA_ENTER(ctx);
    MXMOE_CUDA_CHECK(ctx, cudaGraphLaunch(static_cast<cudaGraphExec_t>(const_cast<void*>(graph)),
                                          cuda_stream(ctx)));
    return MXMOE_OK;
}

void mxmoe_graph_free_cuda(mxmoe_ctx* ctx, void* graph) {
    cudaSetDevice(cuda_state(ctx)->device);
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}
