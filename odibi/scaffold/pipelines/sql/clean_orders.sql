-- The SQL of node clean_orders (pipelines/orders.yaml names this file). It is read like
-- SQL written in the YAML: the tables it reads are the node's inputs, project variables
-- are substituted, and a change to comments or layout alone rebuilds nothing.
SELECT order_id, customer_id, amount
FROM raw_orders
WHERE amount > ${vars.min_amount}
