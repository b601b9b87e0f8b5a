"""
Several vesyncd nodes over one shared database and one MQTT broker (C{--node NAME}): the node
directory and plug leases in the database, and the broker link that routes commands and events.
Nothing here runs without C{--node}.
"""
