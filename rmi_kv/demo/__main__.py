import sys

from rmi_kv.demo.walkthrough import main

sys.exit(main())
