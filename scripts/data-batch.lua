-- wrk script: the gtag-batch.lua workload as one /data request: a page_view, an add_to_cart
-- with one item and a purchase with two items, sharing the page's keys through the
-- `{"events": [...]}` wrapper.
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
wrk.headers["Cookie"] = "_ga=GA1.1.1234567890.1700000000; _ga_ABC123=GS1.1.1700000000.1.1.1700000100.0.0.0; _epik=dj0yJnU9abc"
wrk.headers["Origin"] = "https://shop.example.com"
wrk.headers["Host"] = "track.shop.example.com"
wrk.path = "/data"
wrk.body = [[{"client_id":"1234567890.1700000000","page_location":"https://shop.example.com/checkout/thanks?utm_source=pinterest","page_referrer":"https://shop.example.com/cart","page_title":"Thank you","language":"en-us","consent_state":{"ad_storage":true},
"events":[{"event_name":"page_view","page_type":"checkout"},
{"event_name":"add_to_cart","currency":"EUR","value":49.99,"items":[{"item_id":"SKU-1","item_name":"Running Shoe","item_brand":"Acme","item_category":"Shoes","item_variant":"42","price":49.99,"quantity":1}]},
{"event_name":"purchase","currency":"EUR","transaction_id":"T-100234","value":129.97,"tax":20.75,"shipping":4.99,"items":[{"item_id":"SKU-1","item_name":"Running Shoe","item_brand":"Acme","item_category":"Shoes","price":49.99,"quantity":2},{"item_id":"SKU-2","item_name":"Socks","item_brand":"Acme","item_category":"Accessories","price":29.99,"quantity":1}]}]}]]
