-- wrk script: one realistic purchase per request to /data.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
wrk.body = [[{"event_name":"purchase","transaction_id":"T-100234","client_id":"1234567890.1700000000",
"page_location":"https://shop.example.com/checkout/thanks","currency":"EUR","value":129.97,
"email":" Jane.Doe@Example.com ","phone":"+49 (0)30 1234-5678",
"user_data":{"address":{"first_name":"Jane","last_name":"Doe","city":"Berlin","region":"BE","postal_code":"10115","country":"DE"}},
"items":[{"item_id":"SKU-1","item_name":"Shoe","price":49.99,"quantity":2},{"item_id":"SKU-2","price":9.99,"quantity":1},{"item_id":"SKU-3","price":20,"quantity":1}]}]]
