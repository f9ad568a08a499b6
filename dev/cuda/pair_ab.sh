# Lab: the few-tokens kernel with its pair mode forced off and on (MXMOE_SKINNY_PAIR), same call.
for pair in 0 1; do for shape in ${SHAPES:-gpt-oss-20b qwen3-30b-a3b deepseek-v3}; do
  MXMOE_SKINNY_PAIR=$pair build-gpu/mxmoe bench --backend cuda --op grouped --shape $shape \
    --tokens ${TOKENS:-1,8} --budget-ms 200 | grep -E "^grouped" | awk -v p=$pair '{print "pair="p, $2, $3, $4, $5}'
done; done
