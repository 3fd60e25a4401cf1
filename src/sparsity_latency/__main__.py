from sparsity_latency.cli import main

main()
