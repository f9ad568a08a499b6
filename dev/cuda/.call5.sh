set -u
nvidia-smi --query-gpu=name --format=csv,noheader
TESTS=1 ROUNDS=2 GEMM=auto SHAPES="gpt-oss-20b gpt-oss-120b qwen3-30b-a3b deepseek-v3" TOKENS=1,8,512,4096 BUDGET_MS=150 bash dev/cuda/ab_variants.sh > $OUT/ab.txt 2>&1
grep -v "^tree \|^main " $OUT/ab.txt | tail -20
