"""Rule kinds: each turns a rule's condition into samples (labels, value, whether the condition holds) at one
evaluation time. The registry maps a condition's ``kind`` to its evaluator; the anomaly detection issue adds one."""
