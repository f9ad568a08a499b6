/*
 * sm90_prepass.cuh — the Hopper GEMM's operand passes (sm90_prepass.cu), launched by
 * grouped_gemm_sm90.cu.
 */
#ifndef MXMOE_CUDA_SM90_PREPASS_CUH
#define MXMOE_CUDA_SM90_PREPASS_CUH

#include "cuda/grouped_gemm.cuh"

/* The activations' prepass on the context's stream: from args->tokens where set (the tokens
 * quantized and encoded in one kernel), else from the MXFP4 rows; sets args->release_early. */
mxmoe_status mxmoe_sm90_launch_prepass(mxmoe_ctx* ctx, gemm_args* args);

/* The weight-scale pass into args.w_words (for every expert where args.offsets is NULL). */
mxmoe_status mxmoe_sm90_launch_weight_words(mxmoe_ctx* ctx, const gemm_args& args);

#endif /* MXMOE_CUDA_SM90_PREPASS_CUH */
