import sys

from rmi_kv.demo.runner import main

sys.exit(main())
