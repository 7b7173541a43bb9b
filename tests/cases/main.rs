mod virtual_key;
