
import sys
import vesyncd.tap as tap
if "vesyncd.store_tap" not in tap.FEATURES:
    import vesyncd.store_tap as feature
    tap.FEATURES.append("vesyncd.store_tap")
    tap.Options.optParameters = tap.Options.optParameters + list(feature.optParameters)
from twisted.scripts.twistd import run
sys.argv = ["twistd", "-n", "--pidfile=", "vesyncd"] + sys.argv[1:]
run()
