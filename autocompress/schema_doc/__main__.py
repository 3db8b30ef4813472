import sys

from autocompress.schema_doc import main

sys.exit(main())
