# Lab: the small-batch chain with and without programmatic dependent launch (MXMOE_CUDA_PDL), same call.
for pdl in 1 0; do for shape in gpt-oss-20b deepseek-v3; do for op in grouped layer; do
MXMOE_CUDA_PDL=$pdl build-gpu/mxmoe bench --backend cuda --op $op --shape $shape --tokens 1,8,64 --budget-ms 200 | grep -E "^(grouped|layer)" | awk -v p=$pdl '{print "pdl="p, $1, $2, $3, $4, $5}'
done; done; done
