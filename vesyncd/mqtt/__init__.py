"""The MQTT bridge, its transport and Home Assistant discovery."""
