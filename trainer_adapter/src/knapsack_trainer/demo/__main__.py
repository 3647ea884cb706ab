import sys

from knapsack_trainer.demo.main import main

sys.exit(main())
