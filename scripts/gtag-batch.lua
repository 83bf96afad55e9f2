-- wrk script: one realistic gtag.js batch per request to /g/collect: a page_view, an
-- add_to_cart with one item, and a purchase with two items (URL parameters shared).
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
wrk.headers["Cookie"] = "_ga=GA1.1.1234567890.1700000000; _ga_ABC123=GS1.1.1700000000.1.1.1700000100.0.0.0; _epik=dj0yJnU9abc"
wrk.headers["Origin"] = "https://shop.example.com"
wrk.headers["Host"] = "track.shop.example.com"
wrk.path = "/g/collect?v=2&tid=G-ABC123&gtm=45je4a20v9123456789za200&_p=1700000000123&gcs=G111&gcd=13l3l3l3l1&npa=0&dma=0&cid=1234567890.1700000000&ul=en-us&sr=1920x1080&uaa=x86&uab=64&uafvl=Chromium%3B126.0.6478.126%7CGoogle%2520Chrome%3B126.0.6478.126&uamb=0&uam=&uap=Linux&uapv=6.5.0&uaw=0&are=1&frm=0&pscdl=noapi&_s=3&sid=1700000000&sct=1&seg=1&dl=https%3A%2F%2Fshop.example.com%2Fcheckout%2Fthanks%3Futm_source%3Dpinterest&dr=https%3A%2F%2Fshop.example.com%2Fcart&dt=Thank%20you&_tu=CA"
wrk.body = "en=page_view&_et=12&ep.page_type=checkout\n" ..
  "en=add_to_cart&_et=340&cu=EUR&pr1=idSKU-1~nmRunning%20Shoe~brAcme~caShoes~va42~pr49.99~qt1&epn.value=49.99\n" ..
  "en=purchase&_et=1200&cu=EUR&ep.transaction_id=T-100234&epn.value=129.97&epn.tax=20.75&epn.shipping=4.99&pr1=idSKU-1~nmRunning%20Shoe~brAcme~caShoes~pr49.99~qt2&pr2=idSKU-2~nmSocks~brAcme~caAccessories~pr29.99~qt1"
